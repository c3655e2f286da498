"""One validation of every setting: type, range and finiteness, whatever the source.

:mod:`queuewatch.config` sends every value through :func:`coerce` (a TOML file, a
``QUEUEWATCH_*`` variable, a command-line flag) and every final value through
:func:`check_range` (defaults included), so a bad value is refused the same way wherever it
came from, in one line that names the key and the source. The kind of a setting comes from
its annotation; its range from :data:`RANGES` (a number not listed there must be finite and
not negative, an integer must fit in 64 bits and a float be at most :data:`SECONDS_MAX`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queuewatch.errors import ConfigError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
#: No count or size (bytes included) fits a larger number: a bigger one is a typo (10^30).
INT_MAX = 2**63 - 1
#: No duration queuewatch waits for is longer than ~31 years; a bigger one overflows dates.
SECONDS_MAX = 1e9


@dataclass(frozen=True)
class Range:
    """Allowed values of one numeric setting."""

    low: float = 0.0
    high: float | None = None
    low_open: bool = False
    """``> low`` instead of ``>= low``."""
    note: str = ""
    """Said after a refusal (``0 turns it off``)."""

    def problem(self, value: float) -> str | None:
        """Why ``value`` is refused, or None."""
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.low_open and not value > self.low:
            return f"must be > {_fmt(self.low)}"
        if not self.low_open and value < self.low:
            return "must not be negative" if self.low == 0 else f"must be >= {_fmt(self.low)}"
        if self.high is not None and value > self.high:
            return f"must be <= {_fmt(self.high)}"
        return None


def _fmt(bound: float) -> str:
    """A bound as written: ``100000``, ``9223372036854775807``, ``0.5``."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


_POSITIVE_SECONDS = Range(0.0, SECONDS_MAX, low_open=True)
_RATIO = Range(0.0, 1.0, low_open=True, note="a fraction of the queue's cap, e.g. 0.8")

#: Ranges of the numeric settings (thresholds by their own names).
RANGES: dict[str, Range] = {
    "heartbeat": Range(0, 65535, note="seconds; 0 turns AMQP heartbeats off"),
    "reconnect_max_delay": _POSITIVE_SECONDS,
    "broker_consumer_timeout": _POSITIVE_SECONDS,
    "poll_interval": _POSITIVE_SECONDS,
    "http_timeout": _POSITIVE_SECONDS,
    "events_hold": _POSITIVE_SECONDS,
    "history_size": Range(1, 100_000),
    "fill_warning": _RATIO,
    "fill_critical": _RATIO,
    "stalled_polls": Range(1, 1_000_000),
}


def kind_of(annotation: Any) -> str:
    """``bool``, ``int``, ``float``, ``path``, ``strs`` or ``str`` from a field annotation."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace(" | None", "").replace("None | ", "")  # optional: None is not written
    if "tuple" in text:
        return "strs"
    for kind in ("bool", "int", "float"):
        if text == kind:
            return kind
    return "path" if "Path" in text else "str"


def shown(name: str, raw: Any) -> str:
    """``raw`` as a message may show it (never a password)."""
    return "'***'" if "password" in name or "secret" in name else repr(raw)


def _bad(source: str, name: str, raw: Any, what: str) -> ConfigError:
    return ConfigError(f"{source}: {name} = {shown(name, raw)} is not a valid {what}")


def coerce(name: str, annotation: Any, raw: Any, source: str) -> Any:
    """``raw`` (text from the environment, or a TOML/Python value) as the setting's type.

    Strict: ``read_only = 1`` is not a bool, ``stalled_polls = 1.5`` or ``inf`` not an int,
    ``state_dir = 5`` not a path. Text (the environment) is parsed: ``"1"``/``"true"`` for a
    bool, ``"1.5"`` for a float, ``"a,b"`` for a list."""
    kind = kind_of(annotation)
    text = raw.strip() if isinstance(raw, str) else None
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if text is not None and text.lower() in TRUE_WORDS | FALSE_WORDS:
            return text.lower() in TRUE_WORDS
        raise _bad(source, name, raw, "boolean (true or false)")
    if kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
            return int(raw)
        if text is not None:
            try:
                return int(text)
            except ValueError:
                pass
        raise _bad(source, name, raw, "whole number")
    if kind == "float":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if text is not None:
            try:
                return float(text)
            except ValueError:
                pass
        raise _bad(source, name, raw, "number")
    if kind == "strs":
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise _bad(source, name, raw, "list of strings")
        return tuple(i.strip() for i in items if i.strip())
    if kind == "path":
        if isinstance(raw, Path):
            return raw
        if text:
            try:
                return Path(text).expanduser()
            except RuntimeError:  # "~nobody": no such user, no home directory
                raise _bad(source, name, raw, "path whose ~user names a user with a home "
                           "directory") from None
        raise _bad(source, name, raw, "path (a non-empty string)")
    if not isinstance(raw, str):
        raise _bad(source, name, raw, "string")
    return raw


def check_range(name: str, value: Any, source: str, shown_name: str | None = None) -> None:
    """Refuse a number outside its :data:`RANGES` entry (finite and >= 0 when unlisted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    rule = RANGES.get(name) or Range(0, INT_MAX if isinstance(value, int) else None)
    problem = rule.problem(value)
    if problem is None and isinstance(value, int) and value > INT_MAX:
        problem = f"must be <= {INT_MAX}"
    if problem is None and isinstance(value, float) and value > SECONDS_MAX and name not in RANGES:
        problem = f"must be <= {SECONDS_MAX:g}"
    if problem:
        note = f"; {rule.note}" if rule.note else ""
        raise ConfigError(f"{source}: {shown_name or name} {problem} (got {value!r}{note})")
