"""Each job's events in their real order for one SSE client: :class:`Reorder`.

A job's ``accepted`` is recorded by its producer after the broker's confirm, so a fast
worker's ``started`` can reach the stream first. ``Reorder`` holds an event of a job whose
accepted it has not seen (at most ``HOLD`` seconds; a job from a foreign producer has none)
and sends the accepted before it. The same holds for a job replayed out of its DLQ: the
replay records ``replayed`` after the broker confirmed the copy, so the copy's ``started``
(even its ``succeeded``) can come first; a ``started`` of a job this client saw end
(dead-lettered, cancelled) waits for the job's ``replayed`` the same way. The id of an event
sent ahead of its place is left out, and the last event of such a release carries the highest
position sent, so the client's last id always marks a point before which everything was sent
(a reconnect may repeat, never skip).
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
#: The kinds that end it until an operator replays it (then ``replayed`` opens it again).
END_KINDS = frozenset({ev.DEAD_LETTERED, ev.CANCELLED})
#: The kinds that open it again after it ended.
REOPEN_KINDS = FIRST_KINDS | {ev.REPLAYED}


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
        self.ended: set[str] = set()
        """Jobs whose last event seen ended them (dead-lettered, cancelled): a ``started``
        after that waits for the replay's ``replayed``."""
        self.since = 0.0

    def feed(self, items: list[Item]) -> None:
        seen, waiting, ended, append = self.seen, self.waiting, self.ended, self.buffer.append
        for pos, e in items:
            job = e.job_id
            if job in seen and not waiting and job not in ended and e.kind not in END_KINDS:
                append((pos, e, False))  # the common case: nothing held, job known and alive
                continue
            if e.kind in REOPEN_KINDS:
                self._note_seen(job)
                ended.discard(job)
                if job in self.waiting:
                    self.waiting.discard(job)
                    at = next(i for i, (_, x, _) in enumerate(self.buffer) if x.job_id == job)
                    self.buffer.insert(at, (pos, e, True))
                    continue
            elif e.kind == ev.STARTED and job in ended and job not in self.waiting:
                self._hold(job)  # a replayed job's copy ran before its replay was recorded
            elif job not in self.seen and job not in self.waiting:
                if self.has_first(job, pos):
                    self._note_seen(job)
                else:
                    self._hold(job)
            if e.kind in END_KINDS:
                self._note_ended(job)
            self.buffer.append((pos, e, False))

    def _hold(self, job: str) -> None:
        if not self.waiting:
            self.since = time.monotonic()
        self.waiting.add(job)

    def in_order(self, items: list[Item]) -> bool:
        """True when ``items`` can go out as they are (nothing held, every job's accepted
        seen or in ``items`` before its other events); they are then taken as sent."""
        if self.waiting or self.buffer:
            return False
        seen, ended = self.seen, self.ended
        new: set[str] = set()
        last_end: dict[str, bool] = {}
        """Jobs of ``items`` that end or open again in them: does their last event end them?"""
        for _, e in items:
            job, kind = e.job_id, e.kind
            if kind in END_KINDS:
                last_end[job] = True
            elif kind in REOPEN_KINDS:
                last_end[job] = False
            elif kind == ev.STARTED and last_end.get(job, job in ended):
                return False  # an ended job started again before its replayed: hold it
            if job in seen or job in new:
                continue
            if kind not in FIRST_KINDS:
                return False
            new.add(job)
        for job in new:
            self._note_seen(job)
        for job, ends in last_end.items():
            if ends:
                self._note_ended(job)
            else:
                ended.discard(job)
        return True

    def _note_seen(self, job: str) -> None:
        if len(self.seen) > 100_000:
            self.seen.clear()
        self.seen.add(job)

    def _note_ended(self, job: str) -> None:
        if len(self.ended) > 100_000:
            self.ended.clear()
        self.ended.add(job)

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
        for _, e, _ in self.buffer:  # ended: its last end is after its last (re)start
            if e.kind in END_KINDS:
                self._note_ended(e.job_id)
            elif e.kind in REOPEN_KINDS or e.kind == ev.STARTED:
                self.ended.discard(e.job_id)
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
