"""A schedule: which job, on which queue, when (cron in a time zone, or every N seconds), and
what to do about ticks missed while no scheduler ran.

Ticks are deterministic: every scheduler computes the same tick times, and a tick's job id
is ``<schedule>@<tick time, UTC ISO 8601>`` — the key that makes a tick fire only once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from queuewatch.errors import ConfigError
from queuewatch.schedules.cron import SEARCH_DAYS, Cron, zone

SKIP = "skip"
FIRE_ONCE = "fire_once"
MISSED_POLICIES = (SKIP, FIRE_ONCE)
#: A tick this late (seconds) is still fired normally (a scheduler handing over, a slow
#: loop); an older one is "missed" and follows the schedule's ``missed`` policy.
DEFAULT_GRACE = 30.0
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,100}$")
#: The shortest interval: ticks are whole milliseconds (a shorter one would fire every
#: millisecond while saying otherwise).
MIN_EVERY = 0.001
#: The longest interval: as far ahead as a cron expression's next run is looked for (8 years;
#: a tick must stay a date that can be shown and named).
MAX_EVERY = SEARCH_DAYS * 86_400.0
KEYS = {"name", "queue", "payload", "cron", "every", "timezone", "missed", "grace", "priority",
        "paused"}


@dataclass(frozen=True)
class Schedule:
    name: str
    queue: str
    payload: Any = None
    cron: str | None = None
    """Five-field cron expression (minute resolution), read in ``timezone``."""
    every: float | None = None
    """Or: a fixed interval in seconds; ticks at whole multiples of it since the epoch."""
    timezone: str = "UTC"
    missed: str = SKIP
    """``skip``: ticks missed while every scheduler was down are not fired; ``fire_once``:
    one job is fired for them (the latest missed tick's id) when a scheduler is back."""
    grace: float = DEFAULT_GRACE
    priority: int | None = None
    paused: bool = False
    """Only in a topology file: declared paused."""
    _cron: Cron | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"schedule {self.name!r}"
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ConfigError(f"schedule name {self.name!r}: letters, digits and _ . : - only")
        if not isinstance(self.queue, str) or not self.queue:
            raise ConfigError(f"{where}: needs a queue")
        if (self.cron is None) == (self.every is None):
            raise ConfigError(f"{where}: give exactly one of cron = '...' or every = SECONDS")
        zone(self.timezone)
        if self.cron is not None:
            object.__setattr__(self, "_cron", Cron.parse(self.cron))
        if self.every is not None:
            check_every(self.every, where)
        if self.missed not in MISSED_POLICIES:
            raise ConfigError(f"{where}: missed must be one of {', '.join(MISSED_POLICIES)} "
                              f"(got {self.missed!r})")
        if isinstance(self.grace, bool) or not isinstance(self.grace, int | float) \
                or not 0 <= self.grace < math.inf:
            raise ConfigError(f"{where}: grace must be a number of seconds >= 0")
        if self.priority is not None and not 0 <= self.priority <= 255:
            raise ConfigError(f"{where}: priority must be between 0 and 255")

    @property
    def when(self) -> str:
        """The timing as shown: ``cron '*/5 * * * *' Europe/Paris`` or ``every 30s``."""
        if self.cron is not None:
            return f"cron '{self.cron}' {self.timezone}"
        return f"every {self.every:g}s"

    def next_tick(self, after_ms: int) -> int | None:
        """The first tick strictly after ``after_ms`` (epoch milliseconds)."""
        if self.every is not None:
            step = max(round(self.every * 1000), 1)
            return (after_ms // step + 1) * step
        assert self._cron is not None
        when = self._cron.next_after(datetime.fromtimestamp(after_ms / 1000, UTC), zone(self.timezone))
        return None if when is None else int(when.timestamp() * 1000)

    def definition(self) -> dict[str, Any]:
        """The schedule as plain values (what the schedules stream carries)."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "schedule") -> Schedule:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table")
        unknown = sorted(set(data) - KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(KEYS))})")
        if "name" not in data:
            raise ConfigError(f"{where}: missing 'name'")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def check_every(every: Any, where: str | None = None) -> float:
    """An interval in seconds: a number from :data:`MIN_EVERY` to :data:`MAX_EVERY`, else one
    clear ConfigError."""
    if isinstance(every, bool) or not isinstance(every, int | float) \
            or not MIN_EVERY <= every <= MAX_EVERY:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}every must be a number of seconds > 0, from {MIN_EVERY:g} "
                          f"to {MAX_EVERY:.0f} (8 years) (got {every!r})")
    return float(every)


def tick_id(name: str, tick_ms: int) -> str:
    """The job id of one tick: ``nightly@2026-11-29T02:00:00Z`` (milliseconds when needed)."""
    when = datetime.fromtimestamp(tick_ms / 1000, UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if tick_ms % 1000:
        text += f".{tick_ms % 1000:03d}"
    return f"{name}@{text}Z"


def schedules_from_topology(raw: tuple[Mapping[str, Any], ...], source: str = "topology") -> list[Schedule]:
    """The ``[[schedule]]`` tables of a topology file, checked (names unique)."""
    out = [Schedule.from_mapping(r, f"{source} schedule #{i + 1}") for i, r in enumerate(raw)]
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: schedule(s) declared twice: {', '.join(dupes)}")
    return out
