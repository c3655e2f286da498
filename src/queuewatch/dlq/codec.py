"""AMQP field values <-> JSON, losslessly (for export/import).

JSON has strings, numbers, booleans, null, lists and objects. Every AMQP value that is not
a plain string, int, float, bool, null or list becomes a one-key object, so an object in
the JSON is always a tag and never ambiguous:

* ``{"table": {...}}``        a field table (nested headers, ``x-death`` entries)
* ``{"bytes": "<base64>"}``   a long string that is not UTF-8
* ``{"bytearray": "<b64>"}``  an AMQP byte array
* ``{"timestamp": 1700000000}`` an AMQP timestamp: the number on the wire (whole seconds
  since the epoch, UTC, as RabbitMQ writes them; any 64-bit number another client sent)
* ``{"decimal": "1.25"}``     an AMQP decimal
* ``{"double": "7ff8..."}``   a double JSON has no number for (NaN, infinity): its 8 bytes
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import struct
from collections.abc import Mapping
from typing import Any

from queuewatch.broker.fieldcodec import (
    ENCODE_ERRORS,
    RawTimestamp,
    timestamp_from_wire,
    timestamp_to_wire,
)
from queuewatch.errors import QueuewatchError

_DOUBLE = struct.Struct(">d")


class CodecError(QueuewatchError):
    """An export line holds a value queuewatch did not write."""


def encode_value(value: Any) -> Any:
    if isinstance(value, RawTimestamp | dt.datetime):
        # The number on the wire (an x-death time of 10^17 included), whatever it means.
        try:
            return {"timestamp": timestamp_to_wire(value)}
        except ENCODE_ERRORS as exc:  # a datetime before 1970: no AMQP timestamp
            raise CodecError(f"cannot export the timestamp {value!r}: {exc}") from exc
    if isinstance(value, float) and not math.isfinite(value):
        return {"double": _DOUBLE.pack(value).hex()}  # every bit (NaN payloads too)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytearray):
        return {"bytearray": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, Mapping):
        return {"table": encode_table(value)}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    raise CodecError(f"cannot export an AMQP value of type {type(value).__name__}")


def encode_table(table: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): encode_value(v) for k, v in table.items()}


def decode_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "table" and isinstance(inner, dict):
            return decode_table(inner)
        if tag == "bytes":
            return base64.b64decode(inner)
        if tag == "bytearray":
            return bytearray(base64.b64decode(inner))
        if tag == "timestamp" and isinstance(inner, int) and 0 <= inner < 2**64:
            return timestamp_from_wire(inner)
        if tag == "double" and isinstance(inner, str):
            return float(_DOUBLE.unpack(bytes.fromhex(inner))[0])
        if tag == "decimal":
            return decimal.Decimal(inner)
    raise CodecError(f"unknown value in export file: {value!r}")


def decode_table(table: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): decode_value(v) for k, v in table.items()}
