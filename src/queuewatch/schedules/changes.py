"""Changing schedules at run time: the one implementation behind ``queuewatch schedules
add|change|pause|resume|remove`` and the console's Schedules view.

A change is a value (:class:`ScheduleChange`) that says in words what it will do (the
console's confirmation shows :meth:`ScheduleChange.describe`); :func:`apply_change` refuses
it under ``--read-only``, checks the audit log can be written, writes it to the schedules
stream and records it in the audit log. Bad input (an invalid cron expression or time zone,
an interval <= 0, a payload that is not JSON) is a :class:`~queuewatch.errors.ConfigError`
with one clear line, raised before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from queuewatch.audit import AuditLog, require_writable
from queuewatch.config import Settings
from queuewatch.errors import ConfigError, NotFound
from queuewatch.schedules.spec import MISSED_POLICIES, Schedule, check_every
from queuewatch.schedules.store import ScheduleStore
from queuewatch.schedules.view import queue_exists, with_store

Action = Literal["add", "change", "pause", "resume", "remove"]
ACTIONS: tuple[Action, ...] = ("add", "change", "pause", "resume", "remove")
#: Fields a ``change`` may set; the others keep their current value.
CHANGEABLE = ("queue", "payload", "cron", "every", "timezone", "missed", "grace", "priority")


def parse_payload(text: str | None, what: str = "payload") -> Any:
    """A payload typed by hand: JSON, or None when empty."""
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} is not JSON: {exc}") from None


def parse_every(text: str | float | None) -> float | None:
    """An interval typed by hand (seconds; see :func:`~.spec.check_every`), or None when
    empty."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"every must be a number of seconds > 0 (got {text!r})") from None
    return check_every(value)


def build_schedule(name: str, queue: str, *, cron: str | None = None, every: Any = None,
                   timezone: str | None = None, payload: Any = None, missed: str | None = None,
                   grace: float | None = None, priority: int | None = None) -> Schedule:
    """A schedule from typed-in values, checked (one ConfigError naming what is wrong)."""
    cron = cron.strip() if isinstance(cron, str) and cron.strip() else None
    every_s = parse_every(every)
    if (cron is None) == (every_s is None):
        raise ConfigError(f"schedule {name!r}: give exactly one of a cron expression or an "
                          "interval in seconds")
    if missed is not None and missed not in MISSED_POLICIES:
        raise ConfigError(f"missed must be one of {', '.join(MISSED_POLICIES)} (got {missed!r})")
    return Schedule(name.strip(), queue.strip(), payload=payload, cron=cron, every=every_s,
                    timezone=(timezone or "UTC").strip() or "UTC", missed=missed or "skip",
                    grace=30.0 if grace is None else grace, priority=priority)


@dataclass(frozen=True)
class ScheduleChange:
    action: Action
    name: str
    schedule: Schedule | None = None
    """``add``: the whole schedule (an existing one of that name is replaced)."""
    fields: Mapping[str, Any] = field(default_factory=dict)
    """``change``: the fields to set (see :data:`CHANGEABLE`); the others stay."""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigError(f"unknown schedule action {self.action!r}")
        if self.action == "add" and self.schedule is None:
            raise ConfigError("adding a schedule needs its definition")
        unknown = sorted(set(self.fields) - set(CHANGEABLE))
        if unknown:
            raise ConfigError(f"cannot change {', '.join(unknown)} of a schedule")

    def describe(self, current: Schedule | None = None) -> str:
        """What the change does, in one or two lines (for a confirmation)."""
        if self.action == "add" and self.schedule is not None:
            s = self.schedule
            verb = "Replace" if current is not None else "Add"
            return f"{verb} schedule {s.name}: {s.when} -> queue {s.queue}, missed ticks: {s.missed}"
        if self.action == "change":
            parts = ", ".join(f"{k} = {json.dumps(v) if k == 'payload' else v}"
                              for k, v in self.fields.items()) or "nothing"
            before = f" (now {current.when} -> {current.queue})" if current is not None else ""
            return f"Change schedule {self.name}: {parts}{before}"
        what = {"pause": "Pause schedule {n}: no tick fires until it is resumed",
                "resume": "Resume schedule {n}: ticks fire again from now on (none for the "
                          "pause)",
                "remove": "Remove schedule {n}: it stops firing; its jobs already queued stay"}
        return what[self.action].format(n=self.name)

    def changed(self, current: Schedule) -> Schedule:
        """``change``: the current schedule with :attr:`fields` set, checked again."""
        values = dict(self.fields)
        if "cron" in values and values["cron"] is not None:
            values.setdefault("every", None)
        if "every" in values and values["every"] is not None:
            values.setdefault("cron", None)
        try:
            return replace(current, **values)
        except TypeError as exc:
            raise ConfigError(f"schedule {self.name!r}: {exc}") from None


async def write_change(store: ScheduleStore, change: ScheduleChange, origin: str) -> str:
    """Write ``change`` through ``store``; one line saying what was done."""
    name = change.name
    entry = store.book.entries.get(name)
    if change.action == "add":
        assert change.schedule is not None
        s = change.schedule
        await store.put(s, origin=origin)
        return (f"{'changed' if entry is not None else 'added'} schedule {s.name}: {s.when} -> "
                f"{s.queue}{await _missing_queue(store, s.queue)}")
    if entry is None:
        known = ", ".join(sorted(store.book.entries)) or "none"
        raise NotFound(f"no schedule named {name!r} (known: {known})")
    if change.action == "change":
        s = change.changed(entry.schedule)
        await store.put(s, origin=origin)
        return f"changed schedule {name}: {s.when} -> {s.queue}{await _missing_queue(store, s.queue)}"
    await getattr(store, change.action)(name)
    done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[change.action]
    return f"{done} schedule {name}"


WARNING = "; warning: "
"""What a change's line carries before a warning (the console shows such a line as one)."""


async def _missing_queue(store: ScheduleStore, queue: str) -> str:
    """A note when the schedule's queue does not exist: the scheduler fires no tick into a
    missing queue (it records 'not sent'), and a typo would otherwise look like a schedule
    that works. Not refused: the queue may be declared after its schedule."""
    if await queue_exists(store.link, queue) is False:
        return (f"{WARNING}queue {queue!r} does not exist in this vhost: no tick fires until "
                "it is declared")
    return ""


async def apply_change(settings: Settings, change: ScheduleChange, *, origin: str = "cli",
                       store: ScheduleStore | None = None) -> str:
    """Refused under read-only; written to the schedules stream (through ``store`` when
    given, else a short-lived one); audited. Returns what was done, in one line."""
    require_writable(settings, f"schedules {change.action}")
    audit = AuditLog.from_settings(settings)
    audit.check()
    target = {"vhost": settings.effective_vhost, "schedule": change.name}
    if store is not None:
        detail = await write_change(store, change, origin)
    else:
        detail = await with_store(settings, lambda st: write_change(st, change, origin), by=origin)
    audit.record(f"schedules.{change.action}", target, "ok", detail=detail)
    return detail
