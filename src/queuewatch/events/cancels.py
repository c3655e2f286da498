"""Cancellations of jobs that are not running yet: tombstones in a small stream.

A queued or scheduled job cannot be taken out of its queue (a delayed one sits in a shared
delay level), so cancelling it writes a tombstone instead, and every worker skips a job
whose tombstone it holds when the job comes up. The tombstones live in a stream of their
own (``<events_stream>.cancels``, kept as long as job events), so a worker that starts
later reads every tombstone still relevant — cancels are rare, so this stream stays tiny
and each worker reads all of it.

A tombstone names a job, and optionally one *copy* of it (``x-qw-copy``: each publish of a
job gets a copy id): "run now" republishes a scheduled job and tombstones only the delayed
copy, so the new copy runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from queuewatch.events.model import stream_arguments

SUFFIX = ".cancels"
CONTENT_TYPE = "application/json"


def cancels_stream(events_stream: str) -> str:
    return events_stream + SUFFIX


def cancels_arguments(max_age_seconds: float) -> dict[str, Any]:
    return stream_arguments(max_age_seconds, 100_000_000)


@dataclass(frozen=True)
class Tombstone:
    job_id: str
    copy: str | None
    """Only this copy (None: every copy of the job)."""
    reason: str
    at_ms: int
    marker: str | None = None
    """Not a tombstone: a reader's catch-up marker (see the worker's cancel list)."""

    def encode(self) -> bytes:
        return json.dumps({"job": self.job_id, "copy": self.copy, "reason": self.reason,
                           "at": self.at_ms, "marker": self.marker},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> Tombstone | None:
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("job"), str):
            return None
        copy, at = raw.get("copy"), raw.get("at")
        return cls(raw["job"], copy if isinstance(copy, str) else None,
                   str(raw.get("reason") or "cancelled by operator"),
                   at if isinstance(at, int) else 0,
                   raw["marker"] if isinstance(raw.get("marker"), str) else None)
