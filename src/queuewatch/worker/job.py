"""What a handler receives (:class:`Job`) and the exceptions that steer its outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class NonRetryable(Exception):
    """Raise (or subclass) from a handler when retrying cannot help: the job goes straight
    to the DLQ with reason ``non-retryable``."""


class MalformedPayload(Exception):
    """The message body could not be decoded; the job goes straight to the DLQ."""


@dataclass(frozen=True)
class Job:
    """One delivery of a job, as the handler sees it."""

    queue: str
    job_id: str
    payload: Any
    """Decoded body: JSON value, ``str`` for ``text/*``, else ``bytes``."""
    attempt: int
    """1 for the first run, 2 for the first retry, ..."""
    max_attempts: int
    headers: Mapping[str, Any] = field(default_factory=dict)
    body: bytes = b""
    content_type: str | None = None
    priority: int | None = None
    idempotency_key: str | None = None
    published_ms: int | None = None
    redelivered: bool = False
    """The broker delivered this message before (a worker died or disconnected holding it)."""

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


Handler = Callable[[Job], Awaitable[Any]]
"""``async def handler(job)``; a JSON value it returns is the job's result (job events on)."""
