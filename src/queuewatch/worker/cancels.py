"""The worker's list of cancelled jobs (see :mod:`queuewatch.events.cancels`).

Read from the tombstone stream through the worker's link: all of it at start (the worker
waits, at most :data:`CATCH_UP_TIMEOUT`, until a marker it publishes comes back, before it
consumes jobs), then live.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from queuewatch.broker.link import BrokerLink
from queuewatch.broker.publish import ConfirmedPublisher, Properties
from queuewatch.broker.types import Channel, IncomingMessage, Queue
from queuewatch.config import Settings
from queuewatch.events.cancels import CONTENT_TYPE, Tombstone, cancels_arguments, cancels_stream

log = logging.getLogger(__name__)

#: Longest wait at start for the tombstones written so far (seconds).
CATCH_UP_TIMEOUT = 10.0


class CancelList:
    def __init__(self, link: BrokerLink, settings: Settings) -> None:
        self.link = link
        self.settings = settings
        self.stream = cancels_stream(settings.events_stream)
        self.jobs: dict[str, str] = {}
        """Job id -> reason: every copy is cancelled."""
        self.copies: dict[tuple[str, str], str] = {}
        self._next: int | None = None
        self._markers: dict[str, asyncio.Future[None]] = {}

    def verdict(self, job_id: str, copy: Any) -> tuple[str, bool] | None:
        """Why this delivery must be skipped, and whether the whole job was cancelled (False:
        only this copy, after a "run now"); None to run it."""
        if not self.jobs and not self.copies:
            return None  # the hot path
        reason = self.jobs.get(job_id)
        if reason is not None:
            return reason, True
        if isinstance(copy, str):
            reason = self.copies.get((job_id, copy))
            if reason is not None:
                return reason, False
        return None

    async def start(self) -> None:
        """Subscribe, then wait (at most :data:`CATCH_UP_TIMEOUT`) until every tombstone
        written so far is read."""
        self.link.subscribe(self.stream, self._on_message, prefetch=500, declare=self._declare,
                            arguments=self._arguments)
        marker = uuid.uuid4().hex
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._markers[marker] = fut
        publisher = ConfirmedPublisher(self.link)
        try:
            async with asyncio.timeout(CATCH_UP_TIMEOUT):
                while True:
                    result = await publisher.publish(
                        Tombstone("", None, "", int(time.time() * 1000), marker).encode(),
                        exchange="", routing_key=self.stream, queue=self.stream,
                        properties=Properties(content_type=CONTENT_TYPE, delivery_mode=2))
                    if result.ok:
                        break
                    await asyncio.sleep(0.2)  # not declared yet, or the link is not up yet
                await fut
        except TimeoutError:
            log.warning("the list of cancelled jobs was not read within %gs; going on "
                        "(it keeps reading)", CATCH_UP_TIMEOUT)
        finally:
            self._markers.pop(marker, None)
            await publisher.close()

    async def _declare(self, channel: Channel) -> Queue:
        return await channel.declare_queue(
            self.stream, durable=True, arguments=cancels_arguments(self.settings.events_max_age))

    def _arguments(self) -> dict[str, Any]:
        return {"x-stream-offset": self._next if self._next is not None else "first"}

    def _on_message(self, message: IncomingMessage) -> None:
        offset = (message.headers or {}).get("x-stream-offset")
        if isinstance(offset, int):
            self._next = offset + 1
        stone = Tombstone.decode(message.body)
        if stone is not None:
            if stone.marker is not None:
                fut = self._markers.get(stone.marker)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif stone.copy is None:
                self.jobs[stone.job_id] = stone.reason
            else:
                self.copies[(stone.job_id, stone.copy)] = stone.reason
        task = asyncio.ensure_future(message.ack())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
