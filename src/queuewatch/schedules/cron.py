"""A small cron parser: five fields (minute hour day-of-month month day-of-week) in a time zone.

Supports ``*``, numbers, ranges ``a-b``, lists ``a,b``, steps ``*/n`` and ``a-b/n``, month
and weekday names (``jan``, ``mon``), ``7`` as Sunday, and the macros ``@hourly``,
``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``. As in Vixie
cron, when both day-of-month and day-of-week are restricted a day matching either runs.

Daylight-saving time: a local time that does not exist (the spring-forward gap) is skipped;
a local time that happens twice (fall back) runs once, at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from queuewatch.errors import ConfigError

MACROS = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
#: (name, low, high, names) of the five fields.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))
#: How far ahead a next run is looked for (a "30 2 31 2 *" never comes).
SEARCH_DAYS = 366 * 8


def zone(name: str) -> ZoneInfo:
    """The time zone ``name`` (IANA, e.g. ``Europe/Paris``), or one clear ConfigError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"unknown time zone {name!r} (an IANA name such as "
                          "'UTC' or 'Europe/Paris')") from None


def _value(text: str, low: int, high: int, names: dict[str, int], what: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise ValueError(f"{what}: {text!r} is not a number")
    n = int(text)
    if not low <= n <= high:
        raise ValueError(f"{what}: {n} is out of range {low}-{high}")
    return n


def _field(text: str, low: int, high: int, names: dict[str, int], what: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"{what}: step {step_text!r} must be a whole number >= 1")
            step = int(step_text)
        if rng == "*":
            a, b = low, high
        elif "-" in rng:
            lo_text, _, hi_text = rng.partition("-")
            a, b = (_value(lo_text, low, high, names, what), _value(hi_text, low, high, names, what))
            if a > b:
                raise ValueError(f"{what}: range {rng!r} goes backwards")
        else:
            a = _value(rng, low, high, names, what)
            b = high if slash else a
        out.update(range(a, b + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression; :meth:`next_after` gives its next run."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday."""
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse ``text``; one clear ConfigError naming what is wrong."""
        expanded = MACROS.get(text.strip().lower(), text)
        parts = expanded.split()
        if len(parts) != 5:
            raise ConfigError(f"invalid cron expression {text!r}: expected 5 fields (minute "
                              f"hour day-of-month month day-of-week), got {len(parts)}")
        try:
            sets = [_field(p, lo, hi, names, what)
                    for p, (what, lo, hi, names) in zip(parts, _FIELDS, strict=True)]
        except ValueError as exc:
            raise ConfigError(f"invalid cron expression {text!r}: {exc}") from None
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(text, sets[0], sets[1], sets[2], sets[3], weekdays,
                   any_day=parts[2] == "*", any_weekday=parts[4] == "*")

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        """The first run strictly after ``after`` (aware), as an aware UTC datetime; None if
        there is none in the next :data:`SEARCH_DAYS` days."""
        local = after.astimezone(tz)
        day = datetime(local.year, local.month, local.day)
        for _ in range(SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        wall = day.replace(hour=hour, minute=minute).replace(tzinfo=tz)
                        back = wall.astimezone(UTC).astimezone(tz)
                        if back.replace(tzinfo=None) != wall.replace(tzinfo=None):
                            continue  # does not exist (the clocks jumped over it)
                        when = wall.astimezone(UTC)
                        if when > after:
                            return when
            day += timedelta(days=1)
        return None
