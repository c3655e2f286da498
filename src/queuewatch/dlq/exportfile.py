"""The export file: one JSON line per dead letter (bodies and headers round-trip exactly).

One line per message::

    {"position": 0, "routing_key": "jobs.dlq", "properties": {...}, "headers": {...},
     "body_b64": "...", "body_text": "..."}

``body_text`` is there for people (and ``jq``) when the body is UTF-8; import reads
``body_b64``. Header values use the tagged encoding of :mod:`queuewatch.dlq.codec`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from queuewatch.broker import wire
from queuewatch.broker.wire import Connection
from queuewatch.dlq.codec import decode_table, decode_value, encode_table, encode_value
from queuewatch.dlq.decode import for_publish, properties_dict
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import message_id_for_copy
from queuewatch.dlq.peek import ProgressFn, iterate
from queuewatch.errors import ConfigError

#: Headers RabbitMQ writes itself on delivery; an imported copy starts without them.
BROKER_HEADERS = ("x-delivery-count",)


def export_line(position: int, routing_key: str, props: Any, body: bytes) -> str:
    record: dict[str, Any] = {
        "position": position,
        "routing_key": routing_key,
        "properties": {k: encode_value(v) for k, v in properties_dict(props).items()},
        "headers": encode_table(props.headers or {}),
        "body_b64": base64.b64encode(body).decode(),
    }
    try:
        record["body_text"] = body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


async def export(
    connection: Connection, queue: str, out: IO[str], progress: ProgressFn | None = None,
    flt: DeadLetterFilter | None = None,
) -> int:
    """Write every dead letter of ``queue`` (those ``flt`` selects) to ``out``; the queue
    is left as it was."""
    count = 0
    async with aclosing(iterate(connection, queue, progress=progress)) as stream:
        async for dl, message in stream:
            if flt is not None and not flt.matches(dl):
                continue
            out.write(export_line(dl.position, dl.routing_key, message.header.properties,
                                  dl.body) + "\n")
            count += 1
    out.flush()
    return count


@dataclass(frozen=True)
class Line:
    """One message of an export file: ``number`` (1-based, blank lines not counted), and
    either what to publish or why it cannot be (``error``)."""

    number: int
    properties: wire.Properties | None
    body: bytes
    error: str | None = None


def read_export(path: Path) -> Iterator[Line]:
    """Every message of an export file; a line that cannot be read or turned into an AMQP
    message comes with its ``error`` (the others still come). A UTF-8 byte order mark at
    the start (an editor's) is skipped: it made the first line "not an export line"."""
    try:
        fh = path.open(encoding="utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    with fh:
        number = 0
        for line in fh:
            if not line.strip():
                continue
            number += 1
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise TypeError(f"a JSON object is expected, not {type(rec).__name__}")
                props = {k: decode_value(v) for k, v in rec.get("properties", {}).items()}
                headers = for_publish(decode_table(rec.get("headers", {})))
                for name in BROKER_HEADERS:
                    headers.pop(name, None)
                body = base64.b64decode(rec["body_b64"], validate=True)
                props["message_id"] = message_id_for_copy(props.get("message_id"), headers, body)
                properties = wire.Properties(headers=headers or None, **props)
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError,
                    RecursionError) as exc:
                yield Line(number, None, b"", f"not a queuewatch export line ({type(exc).__name__}: "
                           f"{exc})")
                continue
            yield Line(number, properties, body)


def count_lines(path: Path) -> int:
    """Non-blank lines of ``path``, read as :func:`read_export` reads them (bytes that are
    not UTF-8 make that line "not an export line" there, not an error here)."""
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
