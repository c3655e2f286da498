"""One delivery of a job at a time per worker: claims on idempotency keys.

The broker redelivers a job whose channel it closed (``consumer_timeout``, a cancel, a lost
link) while the first run may still be going in this process. :class:`Claims` makes the
redelivery wait for that run to end, so it can be skipped as a duplicate once the first run
recorded its success, instead of running a second time at once.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class Claims:
    """Keys of deliveries under way. Cheap on the hot path: a dict entry per delivery, and
    an :class:`asyncio.Event` only when a second delivery of the same key has to wait."""

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Event | None] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    async def acquire(self, key: str, job_id: str = "", queue: str = "") -> bool:
        """Hold ``key``, first waiting while another delivery holds it. Returns True when
        it had to wait (the other delivery's outcome is then in the idempotency store).
        ``job_id`` and ``queue`` only name the job in the log line when it waits."""
        waited = False
        while key in self._held:
            event = self._held[key]
            if event is None:
                event = self._held[key] = asyncio.Event()
            if not waited:
                log.info("job %s on %r: another delivery with the same idempotency key is "
                         "under way here; this one waits for it and is skipped if it succeeds",
                         job_id or key, queue)
            waited = True
            await event.wait()
        self._held[key] = None
        return waited

    def release(self, key: str) -> None:
        event = self._held.pop(key, None)
        if event is not None:
            event.set()
