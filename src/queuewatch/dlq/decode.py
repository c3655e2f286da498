"""Decoding bodies and AMQP values for display, and preparing values for republishing.

AMQP field values arrive from pamqp as ``str`` (long strings that are valid UTF-8),
``bytes`` (long strings that are not), ``bytearray`` (byte arrays), ``int``, ``bool``,
``float``, ``Decimal``, timezone-aware ``datetime`` (timestamps, e.g. ``x-death`` ``time``),
``dict`` (tables), ``list`` (arrays) and ``None`` (void).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any, Literal

from queuewatch.broker.fieldcodec import RawTimestamp, WireTimestamp

#: Bodies longer than this are shown truncated (the full body is still exported/replayed).
MAX_PRETTY_BYTES = 64 * 1024
_PROPERTY_NAMES = (
    "content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
    "reply_to", "expiration", "message_id", "timestamp", "message_type", "user_id", "app_id",
)


def header_text(value: Any) -> Any:
    """``bytes``/``bytearray`` as (lossy) UTF-8 text for display and matching; others as is."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value


def to_epoch_ms(value: Any) -> int | None:
    """A timestamp (datetime, epoch seconds or epoch milliseconds) as epoch milliseconds.

    Any number is taken as it is (10^18, -1e300: :func:`format_ms` shows what cannot be a
    date as the number); None for what is no number (text, NaN, infinity)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, bool):
        return None
    if isinstance(value, RawTimestamp):
        # An AMQP timestamp no datetime holds, read as pamqp reads timestamps (above 2^32
        # it takes milliseconds): the number on the wire is what is shown.
        return int(value) if value > 0xFFFFFFFF else int(value) * 1000
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        # Values below 1e11 are seconds (1e11 s is the year 5138); above, milliseconds.
        return int(value * 1000) if -1e11 < value < 1e11 else int(value)
    return None


#: The range of epoch milliseconds a date can be shown for (years 1 to 9999).
_MIN_MS = int((dt.datetime(1, 1, 2, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
              .total_seconds() * 1000)
_MAX_MS = int((dt.datetime(9999, 12, 30, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
              .total_seconds() * 1000)


def format_ms(ms: int | None) -> str:
    """Epoch milliseconds as a UTC time; a number no date can show as the number itself."""
    if ms is None:
        return "-"
    if not _MIN_MS <= ms <= _MAX_MS:
        return f"{ms} (not a date)"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def hexdump(data: bytes, width: int = 16) -> str:
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off : off + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {chunk.hex(' '):<{width * 3}} {text}")
    return "\n".join(lines)


def decode_body(
    body: bytes, content_type: str | None = None
) -> tuple[Literal["json", "text", "hex"], str]:
    """(kind, pretty text): ``json`` pretty-printed, ``text``, else ``hex`` dump."""
    shown = body[:MAX_PRETTY_BYTES]
    suffix = f"\n... ({len(body) - MAX_PRETTY_BYTES} more bytes)" if len(body) > len(shown) else ""
    try:
        text = shown.decode("utf-8")
    except UnicodeDecodeError:
        return "hex", hexdump(shown) + suffix
    looks_json = (content_type or "").endswith("json") or text.lstrip()[:1] in ("{", "[")
    if not suffix and looks_json:
        try:
            return "json", json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
        except ValueError:
            pass
    return "text", text + suffix


def properties_dict(props: Any) -> dict[str, Any]:
    """pamqp ``Basic.Properties`` as a dict (``message_type`` is AMQP's ``type``)."""
    out: dict[str, Any] = {}
    for name in _PROPERTY_NAMES:
        value = getattr(props, name, None)
        if value is not None:
            out[name] = value
    return out


def for_publish(value: Any) -> Any:
    """A decoded header value made encodable again by pamqp.

    pamqp decodes a long string that is not UTF-8 into ``bytes`` but can only encode
    ``bytearray`` (as an AMQP byte array): the bytes survive, the wire type becomes ``x``.
    """
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, Mapping):
        return {str(k): for_publish(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [for_publish(v) for v in value]
    return value


def jsonable(value: Any) -> Any:
    """A header value for ``--json`` output and display (not for round trips: see transfer).
    What JSON cannot carry (NaN, infinity) becomes its text."""
    if isinstance(value, bytes | bytearray):
        return header_text(value)
    if isinstance(value, WireTimestamp) and getattr(value, "raw", None) is not None \
            and value.raw > 0xFFFFFFFF:
        return f"{value.isoformat()} (on the wire: {value.raw})"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, RawTimestamp):
        return f"{int(value)} (AMQP timestamp, not a date)"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)
