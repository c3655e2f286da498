"""The worker's list of cancelled jobs (see :mod:`queuewatch.events.cancels`).

Read from the tombstone stream through the worker's link with the shared
:class:`~queuewatch.events.catchup.CatchUpReader`: all of it at start (the worker waits, at
most :data:`CATCH_UP_TIMEOUT`, until a marker it publishes comes back, before it consumes
jobs), then live.
"""

from __future__ import annotations

import time
from typing import Any

from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.events.cancels import Tombstone, cancels_arguments, cancels_stream
from queuewatch.events.catchup import CatchUpReader

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
        self.reader = CatchUpReader(
            link, self.stream, cancels_arguments(settings.events_max_age), self._on_record,
            what="cancelled jobs", is_marker=_marker_of, make_marker=_make_marker)

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
        await self.reader.start(CATCH_UP_TIMEOUT)

    def _on_record(self, body: bytes) -> None:
        stone = Tombstone.decode(body)
        if stone is None or stone.marker is not None:
            return
        if stone.copy is None:
            self.jobs[stone.job_id] = stone.reason
        else:
            self.copies[(stone.job_id, stone.copy)] = stone.reason


def _marker_of(body: bytes) -> str | None:
    """A tombstone-shaped marker (written by readers before the shared catch-up reader)."""
    stone = Tombstone.decode(body)
    return None if stone is None else stone.marker


def _make_marker(marker: str) -> bytes:
    return Tombstone("", None, "", int(time.time() * 1000), marker).encode()
