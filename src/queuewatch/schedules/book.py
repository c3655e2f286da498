"""What every scheduler knows about the schedules: :class:`ScheduleBook`, built by applying
the records of the two schedule streams in order (pure: no I/O, unit-tested).

- definitions (``queuewatch.schedules``): ``put`` (a whole definition), ``pause``,
  ``resume``, ``remove`` — every change made from a topology file, the CLI or the API;
- the ledger (``queuewatch.schedules.fired``): the tick jobs themselves (a copy of each job
  the leader published, routed there by the same publish: headers :data:`H_SCHEDULE` and
  :data:`H_TICK`), ``fired`` (a tick's job found published already), ``refused`` (the
  queue refused the job whose copy came before: the tick is due again), ``skipped``
  (missed ticks dropped by the ``skip`` policy), ``leader`` (a scheduler took the lead).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from queuewatch.errors import ConfigError
from queuewatch.schedules.spec import Schedule, tick_id

log = logging.getLogger(__name__)

PUT, PAUSE, RESUME, REMOVE = "put", "pause", "resume", "remove"
FIRED, SKIPPED, LEADER, REFUSED = "fired", "skipped", "leader", "refused"
#: Headers of a tick's job: its schedule and its tick (epoch ms); a message in the ledger
#: with both is the copy of a published tick job.
H_SCHEDULE = "x-qw-schedule"
H_TICK = "x-qw-tick"
DEFINITION_OPS = (PUT, PAUSE, RESUME, REMOVE)


@dataclass(frozen=True)
class Entry:
    schedule: Schedule
    paused: bool = False
    origin: str = "api"
    """Where the definition came from: ``file`` (a topology), ``cli`` or ``api``."""
    defined_ms: int = 0
    """When this definition was written or resumed (no tick before it is ever due)."""
    cursor_ms: int | None = None
    """The last tick dealt with (fired, or skipped as missed)."""
    last_tick_ms: int | None = None
    """The last tick that fired."""
    last_job: str | None = None
    last_fired_ms: int | None = None
    """When that tick's job was published."""


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), default=str).encode()


class ScheduleBook:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.removed: dict[str, dict[str, Any]] = {}
        """Schedules removed at run time -> their last definition (a topology file that
        still declares the same one does not bring it back)."""
        self.leader: str | None = None
        self.leader_since_ms: int | None = None
        self.runs: dict[str, Entry] = {}
        """Schedule -> its run history from the ledger (cursor, last run), kept apart from
        its definition: the two streams are read side by side, in any order."""

    # -- reading records -----------------------------------------------------------------
    def apply_body(self, body: bytes) -> None:
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError("not a record")
        self.apply(raw)

    def apply_message(self, body: bytes, headers: dict[str, Any], at_ms: int | None) -> None:
        """A ledger message: a tick job's copy (by its headers), else a JSON record."""
        name, tick = headers.get(H_SCHEDULE), headers.get(H_TICK)
        if isinstance(name, str) and isinstance(tick, int):
            self.apply({"op": FIRED, "name": name, "tick": tick, "job": tick_id(name, tick),
                        "at": at_ms if at_ms is not None else tick})
            return
        self.apply_body(body)

    def apply(self, raw: dict[str, Any]) -> None:
        op, name, at = raw.get("op"), raw.get("name"), raw.get("at")
        at = at if isinstance(at, int) else 0
        if op == PUT:
            try:
                schedule = Schedule.from_mapping(raw.get("schedule") or {}, "schedule record")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            old = self.entries.get(schedule.name)
            if old is None:
                new = Entry(schedule, paused=schedule.paused,
                            origin=str(raw.get("origin") or "api"), defined_ms=at)
                runs = self.runs.get(schedule.name)
                if runs is not None:
                    new = replace(new, cursor_ms=runs.cursor_ms, last_tick_ms=runs.last_tick_ms,
                                last_job=runs.last_job, last_fired_ms=runs.last_fired_ms)
                self.entries[schedule.name] = new
            else:  # a change: the pause state and the run history stay
                self.entries[schedule.name] = replace(
                    old, schedule=schedule, origin=str(raw.get("origin") or old.origin),
                    defined_ms=at)
            self.removed.pop(schedule.name, None)
            return
        if not isinstance(name, str):
            if op == LEADER and isinstance(raw.get("by"), str):
                self.leader, self.leader_since_ms = raw["by"], at
                return
            raise ValueError(f"record {op!r} names no schedule")
        entry = self.entries.get(name)
        if op == REFUSED:
            tick = raw.get("tick")
            if not isinstance(tick, int):
                raise ValueError("refused record without a tick")
            for book in (self.runs, self.entries):
                e = book.get(name)
                if e is not None and e.cursor_ms == tick:  # due again (nothing later dealt with)
                    book[name] = replace(e, cursor_ms=tick - 1)
            return
        if op in (FIRED, SKIPPED):
            tick = raw.get("tick")
            if not isinstance(tick, int):
                raise ValueError(f"{op} record without a tick")
            job = raw.get("job")
            self.runs[name] = _ran(self.runs.get(name) or Entry(Schedule(name, "-", every=1)),
                                   op, tick, at, job if isinstance(job, str) else None)
            if entry is not None:
                self.entries[name] = _ran(entry, op, tick, at, job if isinstance(job, str) else None)
        elif op in (PAUSE, RESUME):
            if entry is not None:
                # Resumed: ticks that came while paused are not "missed", none is due.
                self.entries[name] = replace(entry, paused=op == PAUSE,
                                             defined_ms=at if op == RESUME else entry.defined_ms)
        elif op == REMOVE:
            if entry is not None:
                self.removed[name] = entry.schedule.definition()
                del self.entries[name]
        else:
            raise ValueError(f"unknown record {op!r}")

    # -- a topology file -----------------------------------------------------------------
    def file_changes(self, declared: list[Schedule]) -> list[Schedule]:
        """The topology's schedules that must be written: new ones, and ones whose file
        definition changed since it was last written from the file. A schedule changed at
        run time (from the CLI or the API) or removed at run time is left as it is until
        the file's own definition of it changes."""
        out = []
        for s in declared:
            d = s.definition()
            entry = self.entries.get(s.name)
            if entry is None:
                if self.removed.get(s.name) != d:
                    out.append(s)
            elif entry.origin == "file" and entry.schedule.definition() != d:
                out.append(s)
        return out


def _ran(entry: Entry, op: str, tick: int, at: int, job: str | None) -> Entry:
    entry = replace(entry, cursor_ms=max(entry.cursor_ms or tick, tick))
    if op == FIRED and (entry.last_tick_ms is None or tick >= entry.last_tick_ms):
        entry = replace(entry, last_tick_ms=tick, last_fired_ms=at, last_job=job)
    return entry
