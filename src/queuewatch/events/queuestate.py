"""Durable per-queue state set by operators: paused or not, and the run-time rate limit.

Each change is one small JSON record appended to a stream of its own
(``<control_exchange>.queue-state``, kept :data:`MAX_AGE` seconds): every worker reads it
from its start at boot (:class:`~queuewatch.events.catchup.CatchUpReader`, bounded wait),
so a worker that starts while a queue is paused stays paused, then tails it live, so a
pause or a new limit reaches every running worker within a few milliseconds. The monitor
reads the same stream, so a paused queue is shown as paused even with no worker running.
The last record of a queue wins; the stream is also the history of who changed what.

Why a stream and not a broker-side marker (a policy, an argument, an empty ``Q.paused``
queue): a marker says *that* a queue is paused but needs a second channel to tell running
workers *now*, and the two can race at a worker's boot; one ordered log answers both.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from queuewatch.broker.link import BrokerLink
from queuewatch.broker.publish import ConfirmedPublisher, Properties
from queuewatch.broker.streams import declare_stream
from queuewatch.broker.types import Connection
from queuewatch.errors import BrokerError, ConfigError
from queuewatch.events.catchup import CatchUpReader
from queuewatch.events.model import stream_arguments

SUFFIX = ".queue-state"
#: Records older than this are dropped by the broker (a pause lasts at most this long
#: for a worker started later: pause again to renew). One year.
MAX_AGE = 365 * 24 * 3600.0
MAX_BYTES = 50_000_000
KINDS = ("pause", "resume", "limit")


def state_stream(control_exchange: str) -> str:
    return control_exchange + SUFFIX


def state_arguments() -> dict[str, Any]:
    return stream_arguments(MAX_AGE, MAX_BYTES)


def check_rate(rate: float | None, what: str = "rate") -> float | None:
    """A rate limit in jobs per second: > 0 and finite (None: no limit)."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) \
            or rate <= 0:
        raise ConfigError(f"{what} must be a number of jobs per second > 0 (got {rate!r}); "
                          "use 'off' to remove the limit")
    return float(rate)


@dataclass(frozen=True)
class LimitSpec:
    """A queue-wide limit (jobs/s over every worker) and an optional per-key one."""

    rate: float | None = None
    per_key: float | None = None
    key: str | None = None
    """Where a job's key is: ``payload:FIELD`` or ``header:NAME``."""

    def __post_init__(self) -> None:
        check_rate(self.rate, "rate_limit")
        check_rate(self.per_key, "rate_limit_per_key")
        if (self.per_key is None) != (self.key is None):
            raise ConfigError("a per-key limit needs both rate_limit_per_key and "
                              "rate_limit_key ('payload:FIELD' or 'header:NAME')")
        if self.key is not None:
            kind, _, name = self.key.partition(":")
            if kind not in ("payload", "header") or not name:
                raise ConfigError(f"rate_limit_key must be 'payload:FIELD' or 'header:NAME' "
                                  f"(got {self.key!r})")

    @property
    def active(self) -> bool:
        return self.rate is not None or self.per_key is not None


@dataclass(frozen=True)
class QueueState:
    queue: str
    paused: bool = False
    limit: LimitSpec | None = None
    """A run-time limit (None: the topology's ``rate_limit`` applies)."""
    changed_at: float = 0.0
    changed_by: str = ""


@dataclass(frozen=True)
class Change:
    queue: str
    kind: str
    at_ms: int
    by: str
    limit: LimitSpec | None = None

    def encode(self) -> bytes:
        lim = self.limit
        return json.dumps({
            "queue": self.queue, "kind": self.kind, "at": self.at_ms, "by": self.by,
            "limit": None if lim is None else {"rate": lim.rate, "per_key": lim.per_key,
                                               "key": lim.key},
        }, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> Change:
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("queue"), str) \
                or raw.get("kind") not in KINDS:
            raise ValueError(f"not a queue-state change: {body[:80]!r}")
        lim = raw.get("limit")
        limit = None
        if isinstance(lim, dict):
            try:
                limit = LimitSpec(lim.get("rate"), lim.get("per_key"), lim.get("key"))
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        at = raw.get("at")
        return cls(raw["queue"], raw["kind"], at if isinstance(at, int) else 0,
                   str(raw.get("by") or ""), limit)


Listener = Callable[[QueueState, QueueState], None]
"""Called with (before, after) when a queue's state changes."""


class QueueStates:
    """Every queue's state, folded from the stream; listeners hear each change."""

    def __init__(self, link: BrokerLink, control_exchange: str) -> None:
        self.states: dict[str, QueueState] = {}
        self.listeners: list[Listener] = []
        self.reader = CatchUpReader(link, state_stream(control_exchange), state_arguments(),
                                    self._on_record, what="queue states (paused, limits)")

    def get(self, queue: str) -> QueueState:
        return self.states.get(queue) or QueueState(queue)

    def paused(self) -> frozenset[str]:
        return frozenset(q for q, s in self.states.items() if s.paused)

    def _on_record(self, body: bytes) -> None:
        change = Change.decode(body)
        before = self.get(change.queue)
        after = replace(before, changed_at=change.at_ms / 1000, changed_by=change.by)
        if change.kind == "pause":
            after = replace(after, paused=True)
        elif change.kind == "resume":
            after = replace(after, paused=False)
        else:
            after = replace(after, limit=change.limit)
        self.states[change.queue] = after
        for listener in list(self.listeners):
            listener(before, after)


async def append_change(connection: Connection, control_exchange: str, change: Change,
                        timeout: float = 10.0) -> None:
    """Write one change (confirmed); declares the stream if it is not there yet."""
    stream = state_stream(control_exchange)
    await declare_stream(connection.channel, stream, state_arguments())
    publisher = ConfirmedPublisher(connection, confirm_timeout=timeout)
    try:
        result = await publisher.publish(
            change.encode(), exchange="", routing_key=stream, queue=stream,
            properties=Properties(content_type="application/json", delivery_mode=2),
            link_timeout=timeout)
    finally:
        await publisher.close()
    if not result.ok:
        raise BrokerError(f"writing the {change.kind} of {change.queue!r} failed: {result.detail}")


def new_change(queue: str, kind: str, by: str, limit: LimitSpec | None = None) -> Change:
    return Change(queue, kind, int(time.time() * 1000), by, limit)
