"""A job's state by id, folded from its events: :func:`fold`.

The state is built only from what was recorded — an id nobody published, or whose events
are past retention, is :attr:`JobState.UNKNOWN`, never "pending". Events are read in time
order (then stream order); an ``accepted`` that arrives after the job already started (the
producer records it after its confirm, a fast worker may start first) does not move the
job back to ``queued``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from queuewatch.events import model as ev
from queuewatch.events.model import Event, Source


class JobState(enum.Enum):
    UNKNOWN = "unknown"
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.DEAD_LETTERED, JobState.CANCELLED)


@dataclass(frozen=True)
class Attempt:
    """One run of a job, as the timeline shows it."""

    number: int
    started_ms: int
    worker: Source
    ended_ms: int | None = None
    outcome: str = "running"
    """``running``, ``succeeded``, ``failed``, ``interrupted`` (the worker went away
    holding it: the broker delivered it again), ``cancelled``."""
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    duration: float | None = None
    redelivered: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.number, "started_ms": self.started_ms, "ended_ms": self.ended_ms,
            "outcome": self.outcome, "worker": self.worker.to_json(), "duration": self.duration,
            "error_type": self.error_type, "error": self.error, "traceback": self.traceback,
            "redelivered": self.redelivered,
        }


@dataclass(frozen=True)
class JobStatus:
    """Where a job is, and how it got there."""

    job_id: str
    state: JobState
    queue: str | None = None
    attempt: int = 0
    """The current (or last) attempt; 0 before the first ran."""
    since_ms: int | None = None
    """When it entered its state."""
    due_ms: int | None = None
    """Scheduled: when it comes up; retrying: when the next attempt is due."""
    worker: Source | None = None
    """Running: who runs it."""
    reason: str | None = None
    """Dead-lettered / cancelled: why."""
    error_type: str | None = None
    error: str | None = None
    has_result: bool = False
    result: Any = None
    result_expired: bool = False
    cancel_requested: bool = False
    accepted_ms: int | None = None
    updated_ms: int | None = None
    attempts: tuple[Attempt, ...] = ()
    events: tuple[Event, ...] = field(default=(), repr=False)
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The accepted/scheduled event's details (webhook, unique key, the message for run-now)."""

    @property
    def known(self) -> bool:
        return self.state is not JobState.UNKNOWN

    def to_json(self, *, timeline: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job_id": self.job_id, "state": self.state.value, "queue": self.queue,
            "attempt": self.attempt, "since_ms": self.since_ms, "due_ms": self.due_ms,
            "worker": self.worker.to_json() if self.worker else None, "reason": self.reason,
            "error_type": self.error_type, "error": self.error, "has_result": self.has_result,
            "result_expired": self.result_expired, "cancel_requested": self.cancel_requested,
            "accepted_ms": self.accepted_ms, "updated_ms": self.updated_ms,
        }
        if self.has_result and not self.result_expired:
            out["result"] = self.result
        if timeline:
            out["attempts"] = [a.to_json() for a in self.attempts]
            # (the result once, above: not again in its succeeded event, up to result_max_bytes)
            out["events"] = [public_event_json(e, with_id=False, with_result=False)
                             for e in self.events]
        return out


def public_event_json(e: Event, *, with_id: bool = True, with_result: bool = True) -> dict[str, Any]:
    """An event as every reader outside the job system gets it (the timeline of ``GET
    /jobs/{id}`` and ``jobs show --json``, the live ``/events`` stream): without the job's
    stored message (the copy kept for run-now: its body and headers), and with a webhook
    shown as its receiver only (a webhook's path or query often holds a token of its own).
    ``with_result=False``: a succeeded event without the handler's result (a status carries
    it once, as its own ``result``, and not at all once expired)."""
    out = e.to_json()
    if not with_id:
        out.pop("id", None)
    data = dict(out.get("data") or {})
    data.pop("message", None)
    if not with_result and e.kind == ev.SUCCEEDED:
        data.pop("result", None)
    if isinstance(data.get("webhook"), str):
        data["webhook"] = webhook_receiver(data["webhook"])
    if data:
        out["data"] = data
    else:
        out.pop("data", None)
    return out


def webhook_receiver(url: str) -> str:
    """``scheme://host:port`` of a webhook URL: what errors, logs and timelines show."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address, bracketed as in a URL ("http://::1:8080" misleads)
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}"


_RANK = {ev.ACCEPTED: 0, ev.SCHEDULED: 1, ev.CANCEL_REQUESTED: 2, ev.STARTED: 3,
         ev.ATTEMPT_FAILED: 4, ev.RETRY_SCHEDULED: 5, ev.SUCCEEDED: 6, ev.DEAD_LETTERED: 6,
         ev.CANCELLED: 6, ev.SKIPPED: 6, ev.REPLAYED: -1}
_BEFORE_RUN = (JobState.UNKNOWN, JobState.QUEUED, JobState.SCHEDULED)


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def repeats_success(e: Event, before: JobStatus) -> bool:
    """``e`` is a worker's "not run: idempotency key done already" (``data.duplicate_key``)
    for a job that had succeeded already: it changes nothing (no new outcome, no webhook);
    only the timeline shows it."""
    return (e.kind == ev.SUCCEEDED and e.data.get("duplicate_key") is not None
            and before.state is JobState.SUCCEEDED)


def fold(job_id: str, events: Iterable[Event], *, result_ttl: float | None = None,
         now_ms: int | None = None) -> JobStatus:
    """The status of ``job_id`` from its events (any order; duplicates by id dropped)."""
    seen: set[str] = set()
    ordered: list[Event] = []
    for e in events:
        if e.event_id in seen or e.kind == ev.SYNC:
            continue
        seen.add(e.event_id)
        ordered.append(e)
    ordered.sort(key=lambda e: (e.at_ms, _RANK.get(e.kind, 9)))
    st = JobStatus(job_id, JobState.UNKNOWN, events=tuple(ordered))
    attempts: list[Attempt] = []

    def close(**changes: Any) -> None:
        if attempts and attempts[-1].ended_ms is None:
            attempts[-1] = replace(attempts[-1], **changes)

    for e in ordered:
        d = e.data
        common: dict[str, Any] = {"queue": e.queue or st.queue, "updated_ms": e.at_ms}
        if e.kind in (ev.ACCEPTED, ev.SCHEDULED):
            due = _int(d, "due")
            data = {**st.data, **d}
            if st.state in _BEFORE_RUN:
                scheduled = due is not None and due > e.at_ms
                st = replace(st, state=JobState.SCHEDULED if scheduled else JobState.QUEUED,
                             since_ms=e.at_ms, due_ms=due if scheduled else None, **common)
            st = replace(st, accepted_ms=st.accepted_ms or e.at_ms, data=data)
        elif e.kind == ev.STARTED:
            close(outcome="interrupted", ended_ms=e.at_ms)
            attempts.append(Attempt(e.attempt, e.at_ms, e.source,
                                    redelivered=bool(d.get("redelivered"))))
            st = replace(st, state=JobState.RUNNING, attempt=e.attempt, since_ms=e.at_ms,
                         worker=e.source, due_ms=None, **common)
            if isinstance(d.get("webhook"), str) and not st.data.get("webhook"):
                # (a job from a client that records no accepted: its header, as the worker read it)
                st = replace(st, data={**st.data, "webhook": d["webhook"]})
        elif e.kind == ev.ATTEMPT_FAILED:
            fields: dict[str, Any] = {"error_type": _str(d, "error_type"), "error": _str(d, "error"),
                      "traceback": _str(d, "traceback"),
                      "duration": d.get("duration") if isinstance(d.get("duration"), float | int) else None}
            if attempts and attempts[-1].ended_ms is None:
                close(outcome="failed", ended_ms=e.at_ms, **fields)
            else:
                attempts.append(Attempt(e.attempt, e.at_ms, e.source, e.at_ms, "failed", **fields))
            st = replace(st, attempt=e.attempt, error_type=fields["error_type"],
                         error=fields["error"], **common)
        elif e.kind == ev.RETRY_SCHEDULED:
            close(outcome="failed", ended_ms=e.at_ms)
            st = replace(st, state=JobState.RETRYING, since_ms=e.at_ms, due_ms=_int(d, "due"),
                         worker=None, **common)
        elif repeats_success(e, st):
            continue  # a delivery of this job again, skipped: its outcome stands (timeline)
        elif e.kind == ev.SUCCEEDED:
            duration = d.get("duration")
            close(outcome="succeeded", ended_ms=e.at_ms,
                  duration=duration if isinstance(duration, float | int) else None)
            has = "result" in d
            expired = bool(has and result_ttl is not None
                           and (now_ms or int(time.time() * 1000)) - e.at_ms > result_ttl * 1000)
            # (a succeeded job has no error: the failed attempts before keep theirs)
            st = replace(st, state=JobState.SUCCEEDED, attempt=e.attempt, since_ms=e.at_ms,
                         worker=None, due_ms=None, has_result=has,
                         result=None if expired else d.get("result"), result_expired=expired,
                         reason=None, error_type=None, error=None, **common)
        elif e.kind == ev.SKIPPED and d.get("copy_only"):
            continue  # the delayed copy of a job that was run now: the timeline shows it
        elif e.kind in (ev.DEAD_LETTERED, ev.CANCELLED, ev.SKIPPED):
            outcome = "failed" if e.kind == ev.DEAD_LETTERED else "cancelled"
            close(outcome=outcome, ended_ms=e.at_ms)
            state = JobState.DEAD_LETTERED if e.kind == ev.DEAD_LETTERED else JobState.CANCELLED
            st = replace(st, state=state, since_ms=e.at_ms, worker=None, due_ms=None,
                         reason=_str(d, "reason"),
                         error_type=_str(d, "error_type") or st.error_type,
                         error=_str(d, "error") or st.error, **common)
        elif e.kind == ev.CANCEL_REQUESTED:
            st = replace(st, cancel_requested=True, **common)
            if st.state in (JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING):
                st = replace(st, state=JobState.CANCELLED, since_ms=e.at_ms, due_ms=None,
                             reason=_str(d, "reason") or "cancelled by operator")
        elif e.kind == ev.REPLAYED:
            st = replace(st, state=JobState.QUEUED, since_ms=e.at_ms, attempt=0, due_ms=None,
                         reason=None, error_type=None, error=None, cancel_requested=False,
                         **common)
    return replace(st, attempts=tuple(attempts))
