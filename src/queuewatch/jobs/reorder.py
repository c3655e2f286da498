"""Each job's events in their real order for one SSE client: :class:`Reorder`.

A job's ``accepted`` is recorded by its producer after the broker's confirm, so a fast
worker's ``started`` can reach the stream first. ``Reorder`` holds an event of a job whose
accepted it has not seen (at most ``HOLD`` seconds; a job from a foreign producer has none)
and sends the accepted before it. The id of an event sent ahead of its place is left out, and
the last event of such a release carries the highest position sent, so the client's last id
always marks a point before which everything was sent (a reconnect may repeat, never skip).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from queuewatch.events import model as ev
from queuewatch.events.model import Event

Position = tuple[int, int]
Item = tuple[Position, Event]

#: Seconds an event waits for its job's accepted event to arrive before it is sent anyway.
HOLD = 1.0
#: The kinds that open a job's life.
FIRST_KINDS = frozenset({ev.ACCEPTED, ev.SCHEDULED})


class Reorder:
    """One client's events in each job's real order (see the module docstring): ``feed``
    items in stream order, ``release`` what may be sent now."""

    def __init__(self, index_has_first: Callable[[str, Position], bool],
                 hold: float = HOLD) -> None:
        self.has_first = index_has_first
        self.hold = hold
        self.buffer: list[tuple[Position, Event, bool]] = []
        self.waiting: set[str] = set()
        self.seen: set[str] = set()
        self.since = 0.0

    def feed(self, items: list[Item]) -> None:
        seen, waiting, append = self.seen, self.waiting, self.buffer.append
        for pos, e in items:
            job = e.job_id
            if job in seen and not waiting:  # the common case: nothing held, job known
                append((pos, e, False))
                continue
            if e.kind in FIRST_KINDS:
                self._note_seen(job)
                if job in self.waiting:
                    self.waiting.discard(job)
                    at = next(i for i, (_, x, _) in enumerate(self.buffer) if x.job_id == job)
                    self.buffer.insert(at, (pos, e, True))
                    continue
            elif job not in self.seen and job not in self.waiting:
                if self.has_first(job, pos):
                    self._note_seen(job)
                else:
                    if not self.waiting:
                        self.since = time.monotonic()
                    self.waiting.add(job)
            self.buffer.append((pos, e, False))

    def in_order(self, items: list[Item]) -> bool:
        """True when ``items`` can go out as they are (nothing held, every job's accepted
        seen or in ``items`` before its other events); they are then taken as sent."""
        if self.waiting or self.buffer:
            return False
        seen = self.seen
        new: set[str] = set()
        for _, e in items:
            if e.job_id in seen or e.job_id in new:
                continue
            if e.kind not in FIRST_KINDS:
                return False
            new.add(e.job_id)
        for job in new:
            self._note_seen(job)
        return True

    def _note_seen(self, job: str) -> None:
        if len(self.seen) > 100_000:
            self.seen.clear()
        self.seen.add(job)

    def due_in(self) -> float | None:
        """Seconds until held events go out anyway (None: nothing held)."""
        if not self.waiting:
            return None
        return max(self.since + self.hold - time.monotonic(), 0.0)

    def release(self) -> list[tuple[Item | None, Event, Position]]:
        """In sending order: (the item whose position and event id make the ``id`` to send,
        or None for no id; the event; its own position)."""
        if self.waiting and time.monotonic() - self.since < self.hold:
            return []
        for job in self.waiting:  # gave up waiting: a job without an accepted event
            self._note_seen(job)
        self.waiting.clear()
        out: list[tuple[Item | None, Event, Position]] = []
        ahead: Position | None = None
        for pos, e, moved in self.buffer:
            if moved:
                ahead = pos if ahead is None or pos > ahead else ahead
                out.append((None, e, pos))
            else:
                out.append(((pos, e) if ahead is None or pos > ahead else None, e, pos))
        if out and ahead is not None:  # everything up to the moved events' is sent now
            top = max(self.buffer, key=lambda entry: entry[0])
            out[-1] = ((top[0], top[1]), out[-1][1], out[-1][2])
        self.buffer = []
        return out
