"""Export a DLQ to JSON lines and import it back (bodies and headers round-trip exactly).

One line per message::

    {"position": 0, "routing_key": "jobs.dlq", "properties": {...}, "headers": {...},
     "body_b64": "...", "body_text": "..."}

``body_text`` is there for people (and ``jq``) when the body is UTF-8; import reads
``body_b64``. Header values use the tagged encoding of :mod:`queuewatch.dlq.codec`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import IO, Any

import aiormq
from aio_pika.abc import AbstractConnection
from pamqp.commands import Basic

from queuewatch.dlq.channel import queue_depth, raw_channel
from queuewatch.dlq.codec import decode_table, decode_value, encode_table, encode_value
from queuewatch.dlq.decode import for_publish, properties_dict
from queuewatch.dlq.peek import ProgressFn, iterate
from queuewatch.errors import ConfigError, PublishError, Unroutable

IMPORT_WINDOW = 500


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
    connection: AbstractConnection, queue: str, out: IO[str], progress: ProgressFn | None = None,
) -> int:
    """Write every dead letter of ``queue`` to ``out``; the queue is left as it was."""
    count = 0
    async with aclosing(iterate(connection, queue, progress=progress)) as stream:
        async for dl, message in stream:
            out.write(export_line(dl.position, dl.routing_key, message.header.properties,
                                  dl.body) + "\n")
            count += 1
    out.flush()
    return count


def read_export(path: Path) -> Iterator[tuple[Basic.Properties, bytes]]:
    """(properties, body) per line of an export file."""
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                props = {k: decode_value(v) for k, v in rec.get("properties", {}).items()}
                headers = for_publish(decode_table(rec.get("headers", {})))
                body = base64.b64decode(rec["body_b64"], validate=True)
                properties = Basic.Properties(headers=headers or None, **props)
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{lineno}: not a queuewatch export line ({exc})") from exc
            yield properties, body


def count_lines(path: Path) -> int:
    try:
        with path.open(encoding="utf-8") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from exc


async def import_(
    connection: AbstractConnection, queue: str, path: Path, progress: ProgressFn | None = None,
) -> int:
    """Publish every line of ``path`` into ``queue`` (confirmed, mandatory); returns the count.

    Raises :class:`PublishError` if any publish is not confirmed: the lines before it are in
    the queue, so re-running may duplicate them (nothing is lost)."""
    total = count_lines(path)
    await queue_depth(connection, queue)  # NotFound before anything is published
    window = asyncio.Semaphore(IMPORT_WINDOW)
    failures: list[BaseException] = []
    done = 0

    def confirmed(fut: asyncio.Future[Any]) -> None:
        nonlocal done
        window.release()
        if not fut.cancelled() and fut.exception() is not None:
            failures.append(fut.exception())  # type: ignore[arg-type]
        else:
            done += 1

    tasks: list[asyncio.Future[Any]] = []
    async with raw_channel(connection, confirms=True) as raw:
        me = asyncio.current_task()
        for i, (props, body) in enumerate(read_export(path)):
            if failures:
                break
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            await window.acquire()
            fut = asyncio.ensure_future(raw.basic_publish(
                body, exchange="", routing_key=queue, properties=props, mandatory=True))
            fut.add_done_callback(confirmed)
            tasks.append(fut)
            if progress is not None and (i + 1) % 1000 == 0:
                progress(i + 1, total)
        if tasks:
            await asyncio.wait(tasks)
    if progress is not None:
        progress(done, total)
    if failures:
        exc = failures[0]
        if isinstance(exc, aiormq.exceptions.PublishError):
            raise Unroutable("", queue) from exc
        raise PublishError(f"import into {queue!r} stopped after {done} messages: {exc}") from exc
    return done
