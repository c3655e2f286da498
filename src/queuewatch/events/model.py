"""A job's life as events: what each transition records, and how events travel.

Every transition of a job is one :class:`Event` with the time, the job id, its queue, the
attempt and where it happened (:class:`Source`). Producers, workers, DLQ replay and operator
commands all record through :class:`~queuewatch.events.recorder.EventRecorder`; status by
id, timelines, results, webhooks and the live stream all read the same events.

On the wire, events travel in batches: one stream message holds one or more events as JSON
lines (``application/x-ndjson``), so a busy worker records hundreds of transitions with one
publish and one confirm. Each event has an id of its own; readers drop an event they have
seen (a batch re-sent after a lost confirm arrives twice).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _q  # the C encoder of one string
from typing import Any

from queuewatch.envelope import now_ms

# -- kinds --------------------------------------------------------------------------------
ACCEPTED = "accepted"
"""Published and confirmed by the broker (``data.due`` when delayed)."""
SCHEDULED = "scheduled"
"""Accepted with a due time in the future (``data.due``, ms)."""
STARTED = "started"
"""A worker began an attempt (``data.redelivered`` when the broker delivered it before)."""
ATTEMPT_FAILED = "attempt_failed"
"""An attempt raised (``data.error_type``, ``error``, ``traceback``, ``duration``)."""
RETRY_SCHEDULED = "retry_scheduled"
"""The next attempt is waiting (``data.next_attempt``, ``due``)."""
SUCCEEDED = "succeeded"
"""The job is done (``data.duration``; ``data.result`` when the handler returned a value)."""
DEAD_LETTERED = "dead_lettered"
"""The job is in its DLQ (``data.reason``, ``dlq``, ``error_type``, ``error``)."""
REPLAYED = "replayed"
"""An operator replayed it out of the DLQ (``data.to``)."""
CANCELLED = "cancelled"
"""Cancelled by an operator (``data.reason``); a running job went to its DLQ."""
CANCEL_REQUESTED = "cancel_requested"
"""An operator asked to cancel a queued or scheduled job; it is skipped when it comes up."""
SKIPPED = "skipped"
"""A worker skipped a delivery of a cancelled job (recorded once it is gone for good)."""
SYNC = "sync"
"""Not a job transition: a reader's marker, published to learn that it has read every
event recorded before it (see :mod:`queuewatch.jobs.tail`)."""

KINDS = (ACCEPTED, SCHEDULED, STARTED, ATTEMPT_FAILED, RETRY_SCHEDULED, SUCCEEDED,
         DEAD_LETTERED, REPLAYED, CANCELLED, CANCEL_REQUESTED, SKIPPED, SYNC)
#: Kinds after which the job needs nothing more (until an operator replays it).
TERMINAL = frozenset({SUCCEEDED, DEAD_LETTERED, CANCELLED, SKIPPED})

CONTENT_TYPE = "application/x-ndjson"
#: Header with the number of events in a stream message.
H_COUNT = "qw-events"


@dataclass(frozen=True)
class Source:
    """Where an event happened."""

    role: str
    """``producer``, ``worker``, ``replay``, ``operator``, ``scheduler``."""
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    name: str | None = None
    """The worker id, producer connection name, ... when there is one."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "host": self.host, "pid": self.pid}
        if self.name:
            out["name"] = self.name
        return out

    @functools.cached_property
    def wire(self) -> str:
        """The JSON text of :meth:`to_json`, made once (a worker stamps every event with it)."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: Any) -> Source:
        if not isinstance(raw, Mapping):
            return cls("unknown", "", 0)
        pid = raw.get("pid")
        return cls(str(raw.get("role", "unknown")), str(raw.get("host", "")),
                   pid if isinstance(pid, int) else 0,
                   str(raw["name"]) if raw.get("name") else None)


@dataclass(frozen=True)
class Event:
    """One transition of one job."""

    kind: str
    job_id: str
    queue: str
    attempt: int
    source: Source
    at_ms: int = field(default_factory=now_ms)
    data: Mapping[str, Any] = field(default_factory=dict)
    """Kind-specific details (see the kind constants)."""
    event_id: str = field(default_factory=lambda: next_event_id())
    offset: int | None = None
    """The stream offset of the message that carried it (set by readers)."""
    raw: str | None = field(default=None, repr=False, compare=False)
    """The JSON line it was read from (set by readers: stored as it came, not re-encoded)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.event_id, "kind": self.kind, "job": self.job_id, "queue": self.queue,
            "attempt": self.attempt, "at": self.at_ms, "by": self.source.to_json(),
        }
        if self.data:
            out["data"] = dict(self.data)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], offset: int | None = None,
                  line: str | None = None, source: Source | None = None) -> Event:
        """Raises ValueError for a line that is not an event."""
        try:
            kind, job, at = raw["kind"], raw["job"], raw["at"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a job event: missing {exc}") from exc
        if not isinstance(kind, str) or not isinstance(job, str) or not isinstance(at, int):
            raise ValueError("not a job event: kind/job/at of the wrong type")
        attempt = raw.get("attempt")
        data = raw.get("data")
        # Built without __init__ (a frozen dataclass's sets each field through
        # object.__setattr__): a reader catching up creates a million of these.
        event = object.__new__(cls)
        event.__dict__.update(
            kind=kind, job_id=job, queue=str(raw.get("queue") or ""),
            attempt=attempt if isinstance(attempt, int) else 1,
            source=source if source is not None else Source.from_json(raw.get("by")), at_ms=at,
            data=data if isinstance(data, Mapping) else {},
            event_id=str(raw.get("id") or uuid.uuid4().hex), offset=offset, raw=line)
        return event


_PREFIX = uuid.uuid4().hex[:16]
_COUNTER = itertools.count()


def next_event_id() -> str:
    """Unique per process run (a random prefix and a counter): cheaper than a uuid4 each."""
    return f"{_PREFIX}{next(_COUNTER):x}"


def line(kind: str, job_id: str, queue: str, attempt: int, source: Source,
         data: Mapping[str, Any] | None = None, at_ms: int | None = None,
         event_id: str | None = None) -> str:
    """One event as its JSON line, built straight from its parts (the worker's hot path
    records lines, not :class:`Event` objects). ``event_id``: a given id (escaped here);
    by default a fresh one."""
    eid = _q(event_id)[1:-1] if event_id else next_event_id()
    text = (f'{{"id":"{eid}","kind":"{kind}","job":{_q(job_id)},'
            f'"queue":{_q(queue)},"attempt":{int(attempt)},'
            f'"at":{int(now_ms() if at_ms is None else at_ms)},"by":{source.wire}')
    if data:
        text += ',"data":' + json.dumps(dict(data), separators=(",", ":"), default=str)
    return text + "}"


Recordable = Event | str
"""What a recorder takes: an event, or an event's JSON line (:func:`line`)."""


def _line(e: Recordable) -> str:
    if isinstance(e, str):
        return e
    return line(e.kind, e.job_id, e.queue, e.attempt, e.source, e.data, e.at_ms, e.event_id)


def encode_batch(events: Iterable[Recordable]) -> bytes:
    """Events as JSON lines (the body of one stream message)."""
    return "\n".join(_line(e) for e in events).encode()


def decode_batch(body: bytes, offset: int | None = None) -> Iterator[Event]:
    """The events in one stream message; lines that are not events are skipped (a stream
    may also hold messages from other writers).

    The whole message is parsed in one call (a reader catching up with a million events
    spends its time here); a message with a line that is not JSON falls back to line by
    line."""
    text = body.decode("utf-8", "replace")
    lines = [line for line in text.split("\n") if line.strip()]
    try:
        parsed = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        parsed = None
    if parsed is None or len(parsed) != len(lines):
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                parsed.append(None)
    sources: dict[Any, Source] = {}
    for raw, line in zip(parsed, lines, strict=True):
        if not isinstance(raw, dict):
            continue
        by = raw.get("by")
        key = (by.get("role"), by.get("host"), by.get("pid"), by.get("name")) \
            if isinstance(by, dict) else None
        source = sources.get(key)
        if source is None:
            source = sources[key] = Source.from_json(by)
        try:
            yield Event.from_json(raw, offset, line, source)
        except (ValueError, TypeError):
            continue


def stream_arguments(max_age_seconds: float, max_bytes: int) -> dict[str, Any]:
    """The job events stream: append-only, kept by age and size (whichever ends first),
    replicated over the cluster's nodes like any stream."""
    return {
        "x-queue-type": "stream",
        "x-max-age": f"{max(int(max_age_seconds), 1)}s",
        "x-max-length-bytes": int(max_bytes),
        # Segments much smaller than the total, so retention drops old events in steps.
        "x-stream-max-segment-size-bytes": max(min(int(max_bytes) // 20, 100_000_000), 1_000_000),
    }
