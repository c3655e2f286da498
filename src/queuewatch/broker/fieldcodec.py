"""AMQP names and field values as RabbitMQ takes them, sent and read back unchanged.

pamqp (under aiormq and aio-pika) is stricter than RabbitMQ, and lossy, in five places that
matter for messages queuewatch did not write (dead letters from Java, .NET, Go or pika
clients) and must send back as they came:

* **names**: pamqp refuses exchange and queue names outside ``[a-zA-Z0-9-_.:@#,/+ ]``;
  RabbitMQ takes any UTF-8 name up to 255 bytes (``svc|orders``, ``orders(v2)``,
  ``заказы``). The pattern is widened to RabbitMQ's rule (the 255-byte limit is checked by
  pamqp's short-string encoder). pamqp still refuses exchange names over 127 characters:
  such a publish fails before anything is sent, and the caller reports it per message;
* **doubles**: pamqp sends every ``float`` as a 32-bit float: a double header from another
  client loses precision on its way back, and one beyond +-3.4e38 (``1e300``) cannot be
  sent at all ("float too large to pack"). A Python float is a 64-bit double: it is sent
  as one (AMQP type ``d``), exactly;
* **timestamps beyond the year 9999**: pamqp raises while *decoding* the message (``year
  3170843 is out of range``: an ``x-death`` time of 10^17), which ends the whole read.
  Such a value is read as a :class:`RawTimestamp` (the number on the wire) and sent back
  as the same AMQP timestamp;
* **long header names**: pamqp cuts field names to 128 bytes (and logs a warning); they
  are sent whole (a short string: up to 255 bytes);
* **timestamps pamqp reads as milliseconds** (above 2^32, pamqp divides by 1000): read as
  a :class:`WireTimestamp`, a ``datetime`` like pamqp's that remembers the number on the
  wire, so a republish sends that number, not a changed one.

:func:`install` applies this once per process; importing :mod:`queuewatch.broker` does it.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Callable
from typing import Any

import pamqp.constants
import pamqp.decode
import pamqp.encode

#: RabbitMQ's rule for exchange and queue names: any UTF-8 string (up to 255 bytes, which
#: the short-string encoder enforces).
ANY_NAME = re.compile(r"(?s).*")
#: Errors pamqp raises for a value or name it cannot put on the wire (before sending).
ENCODE_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OverflowError, struct.error)

_TIMESTAMP = struct.Struct(">Q")
_INTEGER = struct.Struct(">I")
_DOUBLE = struct.Struct(">d")


class RawTimestamp(int):
    """An AMQP timestamp that no ``datetime`` can hold (beyond the year 9999): the
    number on the wire (seconds since the epoch, as the sender meant them or not)."""


class WireTimestamp(dt.datetime):
    """An AMQP timestamp as pamqp reads it (a UTC ``datetime``), remembering the number
    on the wire (``raw``) so that it is sent back unchanged."""

    raw: int


def decode_timestamp(value: bytes) -> tuple[int, dt.datetime | RawTimestamp]:
    try:
        (raw,) = _TIMESTAMP.unpack(value[0:8])
    except struct.error as exc:
        raise ValueError("Could not unpack timestamp value") from exc
    seconds = raw / 1000.0 if raw > 0xFFFFFFFF else raw  # pamqp's reading, kept
    try:
        when = WireTimestamp.fromtimestamp(seconds, tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return 8, RawTimestamp(raw)
    when.raw = raw
    return 8, when


def timestamp_from_wire(raw: int) -> dt.datetime | RawTimestamp:
    """What reading the AMQP timestamp ``raw`` gives (see :func:`decode_timestamp`)."""
    return decode_timestamp(_TIMESTAMP.pack(raw))[1]


def timestamp_to_wire(value: dt.datetime | RawTimestamp) -> int:
    """The number an AMQP timestamp ``value`` is sent as."""
    return int(_TIMESTAMP.unpack(encode_timestamp(value))[0])


def encode_timestamp(value: Any) -> bytes:
    if isinstance(value, RawTimestamp):
        return _TIMESTAMP.pack(int(value))
    if isinstance(value, WireTimestamp) and hasattr(value, "raw"):
        return _TIMESTAMP.pack(value.raw)
    return _ORIGINAL_TIMESTAMP(value)


def _encode_field_table(value: Any) -> bytes:
    """pamqp's table encoder without its cut of field names to 128 bytes (with a warning
    on the user's terminal): a name is a short string, up to 255 bytes, as RabbitMQ and
    other clients send it; a longer one cannot be sent (TypeError, reported per message)."""
    if not value:
        return _INTEGER.pack(0)
    if not isinstance(value, dict):
        raise TypeError(f"dict required, received {type(value)}")
    data = []
    for key, item in sorted(value.items()):
        data.append(pamqp.encode.short_string(key))
        try:
            data.append(_encode_table_value(item))
        except TypeError as err:
            raise TypeError(f"{key} error: {err}") from err
    output = b"".join(data)
    return _INTEGER.pack(len(output)) + output


def _encode_table_value(value: Any) -> bytes:
    if isinstance(value, float):
        return b"d" + _DOUBLE.pack(value)
    if isinstance(value, RawTimestamp | WireTimestamp):
        return b"T" + encode_timestamp(value)
    if isinstance(value, dict):
        return b"F" + _encode_field_table(value)
    return _ORIGINAL_TABLE_VALUE(value)


_ORIGINAL_TIMESTAMP: Callable[[Any], bytes] = pamqp.encode.timestamp
_ORIGINAL_TABLE_VALUE: Callable[[Any], bytes] = pamqp.encode.encode_table_value
_installed = False


def install() -> None:
    """Make pamqp take what RabbitMQ takes (see the module doc). Idempotent."""
    global _installed
    if _installed:
        return
    pamqp.constants.DOMAIN_REGEX["exchange-name"] = ANY_NAME
    pamqp.constants.DOMAIN_REGEX["queue-name"] = ANY_NAME
    pamqp.decode.METHODS["timestamp"] = decode_timestamp
    pamqp.decode.TABLE_MAPPING[b"T"] = decode_timestamp
    pamqp.encode.METHODS["timestamp"] = encode_timestamp
    pamqp.encode.encode_table_value = _encode_table_value
    pamqp.encode.field_table = _encode_field_table
    pamqp.encode.METHODS["table"] = _encode_field_table
    _installed = True


def sendable_name(name: str, what: str = "exchange") -> str | None:
    """Why ``name`` cannot be sent as an exchange (or queue) name, or None when it can."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > 255:
        return f"the {what} name is {size} bytes: AMQP names are at most 255 bytes"
    if what == "exchange" and len(name) > 127:
        return (f"the exchange name is {len(name)} characters: the AMQP library (pamqp) "
                "sends at most 127 (RabbitMQ would take up to 255 bytes)")
    return None
