"""A small stream every process reads from its start, then tails live: :class:`CatchUpReader`.

For durable state that a process started later must see before it acts (cancelled jobs,
paused queues, run-time rate limits): subscribe from ``first`` (again from the offset after
the last record seen, after a reconnect), publish a *marker* and wait (bounded) until it
comes back — then every record written before the wait began has been read. Records are
handed to ``on_record`` in stream order; markers never are.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from queuewatch.broker.link import BrokerLink
from queuewatch.broker.publish import ConfirmedPublisher, Properties
from queuewatch.broker.streams import wait_ready
from queuewatch.broker.types import Channel, IncomingMessage, Queue

log = logging.getLogger(__name__)

#: The header that makes a message a reader's catch-up marker, not a record.
H_MARKER = "x-qw-marker"
#: Longest wait at start for the records written so far (seconds).
CATCH_UP_TIMEOUT = 10.0


class CatchUpReader:
    """Reads ``stream`` (declared with ``arguments``) through ``link``; see the module."""

    def __init__(self, link: BrokerLink, stream: str, arguments: dict[str, Any],
                 on_record: Callable[[bytes], None], *, what: str = "records",
                 is_marker: Callable[[bytes], str | None] | None = None,
                 make_marker: Callable[[str], bytes] | None = None,
                 on_message: Callable[[IncomingMessage], None] | None = None) -> None:
        """``on_message``: instead of ``on_record``, for records that need their headers."""
        self.link = link
        self._on_whole = on_message
        self.stream = stream
        self.stream_arguments = arguments
        self.on_record = on_record
        self.what = what
        self._is_marker = is_marker
        self._make_marker = make_marker
        self._next: int | None = None
        self._markers: dict[str, asyncio.Future[None]] = {}
        self.caught_up = False

    def subscribe(self, *, passive: bool = False) -> None:
        """Start reading (from the first record; in the background). ``passive``: do not
        declare the stream (a reader that may not; it reads once the stream exists)."""
        self.link.subscribe(self.stream, self._on_message, prefetch=500,
                            declare=None if passive else self._declare,
                            arguments=self._arguments, on_change=_quiet)

    async def start(self, timeout: float = CATCH_UP_TIMEOUT) -> bool:
        """Subscribe, then wait (at most ``timeout``) until every record written so far is
        read; False when it was not (it goes on reading)."""
        self.subscribe()
        return await self.catch_up(timeout)

    async def catch_up(self, timeout: float = CATCH_UP_TIMEOUT) -> bool:
        marker = uuid.uuid4().hex
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._markers[marker] = fut
        body = self._make_marker(marker) if self._make_marker is not None else b""
        publisher = ConfirmedPublisher(self.link)
        try:
            async with asyncio.timeout(timeout):
                # A stream declared a moment ago (by us or anyone) must be ready first: a
                # publish before its writer runs closes the whole connection.
                while not await wait_ready(lambda: self.link.channel(timeout=timeout), self.stream, 2.0):
                    await asyncio.sleep(0.2)
                while True:
                    result = await publisher.publish(
                        body, exchange="", routing_key=self.stream, queue=self.stream,
                        properties=Properties(content_type="application/json", delivery_mode=2,
                                              headers={H_MARKER: marker}))
                    if result.ok:
                        break
                    await asyncio.sleep(0.2)  # not declared yet, or the link is not up yet
                await fut
        except TimeoutError:
            log.warning("the %s were not read within %gs; going on (it keeps reading)",
                        self.what, timeout)
            return False
        finally:
            self._markers.pop(marker, None)
            await publisher.close()
        self.caught_up = True
        return True

    async def _declare(self, channel: Channel) -> Queue:
        return await channel.declare_queue(self.stream, durable=True,
                                           arguments=self.stream_arguments)

    def _arguments(self) -> dict[str, Any]:
        return {"x-stream-offset": self._next if self._next is not None else "first"}

    def _on_message(self, message: IncomingMessage) -> None:
        headers = message.headers or {}
        offset = headers.get("x-stream-offset")
        if isinstance(offset, int):
            self._next = offset + 1
        marker = headers.get(H_MARKER)
        if not isinstance(marker, str) and self._is_marker is not None:
            marker = self._is_marker(message.body)
        if isinstance(marker, str):
            fut = self._markers.get(marker)
            if fut is not None and not fut.done():
                fut.set_result(None)
        else:
            try:
                if self._on_whole is not None:
                    self._on_whole(message)
                else:
                    self.on_record(message.body)
            except ValueError as exc:
                log.error("skipping a record of %s that cannot be read: %s", self.stream, exc)
        task = asyncio.ensure_future(message.ack())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _quiet(_sub: object) -> None:
    """The subscription's own state lines stay at INFO (a missing stream is normal)."""
