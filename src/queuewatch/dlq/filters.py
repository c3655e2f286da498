"""Which dead letters an action applies to: job ids, error type, reason, text, age."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from queuewatch.dlq.causes import label_of
from queuewatch.dlq.model import DeadLetter


@dataclass(frozen=True)
class DeadLetterFilter:
    """All given criteria must hold (AND); an empty filter matches everything."""

    job_ids: frozenset[str] = field(default_factory=frozenset)
    """Match these job ids (or message ids)."""
    error_type: str | None = None
    """Exact error type, or its last dotted part (``ValueError`` matches ``builtins.ValueError``)."""
    reason: str | None = None
    """Death reason, case-insensitive (``failed``, ``rejected``, ``cancelled by operator``)."""
    text: str | None = None
    """Substring of the body (as UTF-8 text, or raw bytes), the error message or the job id."""
    min_age: float | None = None
    """Dead for at least this many seconds."""
    max_age: float | None = None
    """Dead for at most this many seconds."""
    cause: str | None = None
    """The cause as the console's grouping labels it (error type + message shape,
    ``ValueError: bad input <n>``: see :mod:`queuewatch.dlq.causes`)."""

    @classmethod
    def for_jobs(cls, job_ids: Iterable[str]) -> DeadLetterFilter:
        return cls(job_ids=frozenset(job_ids))

    @property
    def is_empty(self) -> bool:
        return self == DeadLetterFilter()

    def matches(self, dl: DeadLetter) -> bool:
        if self.job_ids and dl.job_id not in self.job_ids and dl.message_id not in self.job_ids:
            return False
        if self.error_type is not None:
            et = dl.death.error_type or ""
            if et != self.error_type and et.rsplit(".", 1)[-1] != self.error_type:
                return False
        if self.reason is not None and (dl.death.reason or "").lower() != self.reason.lower():
            return False
        if self.text is not None and not self._text_matches(dl):
            return False
        if self.cause is not None and label_of(dl) != self.cause:
            return False
        if self.min_age is not None or self.max_age is not None:
            age = dl.age_seconds
            if age is None:
                return False
            if self.min_age is not None and age < self.min_age:
                return False
            if self.max_age is not None and age > self.max_age:
                return False
        return True

    def _text_matches(self, dl: DeadLetter) -> bool:
        assert self.text is not None
        if self.text.encode() in dl.body:
            return True
        haystacks = (dl.death.error_message, dl.job_id, dl.message_id)
        return any(h is not None and self.text in h for h in haystacks)

    def describe(self) -> dict[str, Any]:
        """The filter as plain values (for the audit log and ``--json``)."""
        out: dict[str, Any] = {}
        if self.job_ids:
            out["job_ids"] = sorted(self.job_ids)
        for name in ("error_type", "reason", "text", "min_age", "max_age", "cause"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out
