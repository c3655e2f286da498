"""A dead letter's cause: its error type and the *shape* of its message (numbers, ids,
e-mail addresses and quoted values replaced by placeholders). The console groups dead
letters by it (``b`` in the DLQ browser) and the DLQ commands select by it
(``--cause 'ValueError: bad input <n>'``): one definition for both.

:func:`group_by_cause` groups dead letters with counts and the first and last time each
cause was seen — the Sidekiq "Dead" tab, by cause. A replay, delete or export of a group is
the DLQ core's filtered one, with its dry-run count and guards."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from queuewatch.dlq.model import DeadLetter, published_ms

_SHAPES = (
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{16,}\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\b\w*\d[\w./-]*"), "<n>"),
)


@lru_cache(maxsize=65536)  # messages repeat: one shape per distinct message
def message_shape(message: str | None) -> str:
    """``mailbox customer93@example.com does not exist`` -> ``mailbox <email> does not exist``;
    the first line only, at most 120 characters."""
    if not message:
        return ""
    text = message.strip().splitlines()[0] if message.strip() else ""
    for pattern, placeholder in _SHAPES:
        text = pattern.sub(placeholder, text)
    return text[:120]


def cause_of(dl: DeadLetter) -> tuple[str, str]:
    """``(error type, message shape)``; without an error type, the death reason in brackets."""
    d = dl.death
    error_type = d.error_type or (f"({d.reason})" if d.reason else "(no error recorded)")
    return error_type, message_shape(d.error_message)


def cause_label(error_type: str, shape: str) -> str:
    """How a cause is shown and selected: ``ValueError: bad input <n>``."""
    return f"{error_type}: {shape}" if shape else error_type


def label_of(dl: DeadLetter) -> str:
    return cause_label(*cause_of(dl))


@dataclass
class Cause:
    """One cause of death and the dead letters it holds."""

    error_type: str
    shape: str
    count: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    job_ids: list[str] = field(default_factory=list)
    """Ids of its dead letters (those without one cannot be acted on by id)."""
    reasons: set[str] = field(default_factory=set)

    @property
    def key(self) -> str:
        return f"{self.error_type}|{self.shape}"

    @property
    def label(self) -> str:
        """As the DLQ commands select it (``--cause``): see :mod:`queuewatch.dlq.causes`."""
        return cause_label(self.error_type, self.shape)


def group_by_cause(letters: Iterable[DeadLetter]) -> list[Cause]:
    """The causes of ``letters``, most dead letters first (then the most recent)."""
    causes: dict[tuple[str, str], Cause] = {}
    for dl in letters:
        d = dl.death
        error_type, shape = cause_of(dl)
        cause = causes.get((error_type, shape))
        if cause is None:
            cause = causes[(error_type, shape)] = Cause(error_type, shape)
        cause.count += 1
        ident = dl.job_id or dl.message_id
        if ident:
            cause.job_ids.append(ident)
        if d.reason:
            cause.reasons.add(d.reason)
        ms = d.last_death_ms or d.first_death_ms or published_ms(dl.headers, dl.properties)
        if ms is not None:
            cause.first_ms = ms if cause.first_ms is None else min(cause.first_ms, ms)
            cause.last_ms = ms if cause.last_ms is None else max(cause.last_ms, ms)
    return sorted(causes.values(), key=lambda c: (-c.count, -(c.last_ms or 0), c.key))
