"""Wire schema for worker telemetry (heartbeats) and operator control messages.

Workers publish a :class:`Heartbeat` about once a second to the telemetry exchange
(topic, routing key ``heartbeat.<worker_id>``, transient, not mandatory): O(workers)
messages per second, nothing per job. The monitor binds an exclusive auto-delete queue
to ``heartbeat.#`` and keeps the latest beat per worker.

Operators send a :class:`ControlCommand` to the control exchange (routing key
``control.<worker_id>``); each worker consumes its own exclusive queue bound to that key.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

HEARTBEAT_KEY_PREFIX = "heartbeat."
CONTROL_KEY_PREFIX = "control."
SCHEMA_VERSION = 1
#: Names of queuewatch's private, exclusive queues: a worker's control queue and a
#: listener's heartbeat queue. One per process, gone with it: the monitor leaves them out
#: (they are plumbing, and each would be a new short-lived series in Prometheus).
CONTROL_QUEUE_PREFIX = "queuewatch.control."
LISTENER_QUEUE_PREFIX = "queuewatch.monitor."
#: Rate-limit tokens and their leader lock (see queuewatch.worker.limits): plumbing too.
TOKENS_QUEUE_PREFIX = "queuewatch.tokens."
PRIVATE_QUEUE_PREFIXES = (CONTROL_QUEUE_PREFIX, LISTENER_QUEUE_PREFIX, TOKENS_QUEUE_PREFIX)


def listener_queue_name() -> str:
    """A fresh name for a process's own heartbeat queue."""
    return LISTENER_QUEUE_PREFIX + uuid.uuid4().hex[:12]


def is_private_queue(name: str) -> bool:
    return name.startswith(PRIVATE_QUEUE_PREFIXES)


def heartbeat_routing_key(worker_id: str) -> str:
    return HEARTBEAT_KEY_PREFIX + worker_id


def control_routing_key(worker_id: str) -> str:
    return CONTROL_KEY_PREFIX + worker_id


@dataclass(frozen=True)
class InFlightJob:
    """A job a worker is running right now."""

    job_id: str
    queue: str
    attempt: int
    started_at: float
    """Epoch seconds when the handler started."""


@dataclass(frozen=True)
class ConsumerStatus:
    """Whether a worker consumes one of its queues right now; if not, since when and why."""

    queue: str
    live: bool
    since: float
    """Epoch seconds of the last change (when it stopped consuming, while ``live`` is False)."""
    cause: str | None = None
    """Why not (None while live): ``starting``, ``link_down``, ``consumer_timeout``,
    ``cancelled_by_broker``, ``queue_missing``, ``queue_down``, ``channel_closed``, ``stopped``."""
    reason: str | None = None
    """The broker's words, or the worker's, for a person."""


#: What happens next and what to do about a consumer that is not live, by its
#: ``ConsumerStatus.cause`` (the cause and the broker's words come with it separately).
CONSUMER_ADVICE = {
    "consumer_timeout": "a job ran past the broker's consumer_timeout; the worker subscribes "
    "again by itself. Raise consumer_timeout in rabbitmq.conf, or lower the queue's job time "
    "limit ('timeout' in the topology)",
    "cancelled_by_broker": "the worker subscribes again by itself once the queue is back: if "
    "it was deleted, declare it again ('queuewatch declare'); if its node is down, bring the "
    "node back",
    "queue_missing": "declare the queue ('queuewatch declare'); the worker subscribes by "
    "itself once it exists",
    "queue_down": "bring the queue's node back; the worker subscribes again by itself then",
    "link_down": "the worker reconnects by itself; check that RabbitMQ is reachable from it",
    "channel_closed": "the worker subscribes again by itself; if this lasts, read its log",
    "starting": "still subscribing; if this lasts, read the worker's log",
    "stopped": "the worker is shutting down",
}


def consumer_advice(cause: str | None) -> str:
    return CONSUMER_ADVICE.get(cause or "", "read the worker's log")


@dataclass(frozen=True)
class OutboxStatus:
    """A producer's outbox (its local spool while the broker is away), in its heartbeat."""

    depth: int
    """Jobs spooled, not yet confirmed by the broker."""
    oldest_age: float | None
    """Seconds the oldest of them has waited (None: empty)."""
    cap: int
    """``outbox_max_jobs``: at the cap publishes get back-pressure."""
    draining: bool
    """Sending the spool to the broker now."""
    blocked: bool
    """The broker blocks the producer's connection (resource alarm)."""


#: ``Heartbeat.role`` of a producer's beat (a worker's is ``worker``).
PRODUCER_ROLE = "producer"


@dataclass(frozen=True)
class Heartbeat:
    """One worker's (or outbox-enabled producer's, ``role = "producer"``) state, sent about
    once a second."""

    worker_id: str
    host: str
    pid: int
    sent_at: float
    """Epoch seconds."""
    queues: tuple[str, ...]
    concurrency: int
    cpu_percent: float
    rss_bytes: int
    in_flight: tuple[InFlightJob, ...] = ()
    succeeded: int = 0
    """Counts since the previous heartbeat."""
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    interval: float = 1.0
    """Seconds between beats (so rates can be derived)."""
    connection_name: str | None = None
    """The AMQP ``connection_name`` client property, to find the worker's connection."""
    started_at: float = 0.0
    version: int = SCHEMA_VERSION
    consumers: tuple[ConsumerStatus, ...] = ()
    """Per queue the worker should consume, whether it does (empty from workers older than
    this field: unknown, not "none")."""
    role: str = "worker"
    """``worker``, or ``producer`` (a producer with an outbox: no queues, no jobs)."""
    outbox: OutboxStatus | None = None
    """A producer's outbox."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Heartbeat:
        raw: dict[str, Any] = json.loads(data)
        raw["queues"] = tuple(raw.get("queues", ()))
        raw["in_flight"] = tuple(InFlightJob(**j) for j in raw.get("in_flight", ()))
        raw["consumers"] = tuple(_consumer_status(c) for c in raw.get("consumers", ()))
        if isinstance(raw.get("outbox"), dict):
            known_ob = OutboxStatus.__dataclass_fields__
            raw["outbox"] = OutboxStatus(**{k: v for k, v in raw["outbox"].items() if k in known_ob})
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


def _consumer_status(raw: dict[str, Any]) -> ConsumerStatus:
    known = ConsumerStatus.__dataclass_fields__
    return ConsumerStatus(**{k: v for k, v in raw.items() if k in known})


@dataclass(frozen=True)
class ControlCommand:
    """An operator's instruction to one worker."""

    action: str
    """``cancel`` (a job) is the one action today."""
    job_id: str | None = None
    reason: str = "cancelled by operator"
    requested_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ControlCommand:
        raw = json.loads(data)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})
