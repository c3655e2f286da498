"""Frozen values the monitor produces, one :class:`Snapshot` per poll.

These are the single answer behind ``queuewatch status --json``, the exporter's gauges and
the TUI's tables. Conventions: durations are seconds (float); ``None`` means *unknown*
(never shown as 0); ``math.inf`` in an ETA means *never* (the queue is not draining /
not filling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from queuewatch.telemetry import ConsumerStatus, InFlightJob

Severity = Literal["warning", "critical"]


def queue_ref(vhost: str, name: str, qualified: bool) -> str:
    """How a snapshot names a queue: its name, or ``vhost/name`` in a snapshot of all vhosts
    (where two vhosts may each have a "jobs")."""
    return f"{vhost}/{name}" if qualified else name


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue at one poll (slots: a snapshot of 50,000 queues takes 36 MB, not 98 MB)."""

    vhost: str
    name: str
    type: str
    """classic / quorum / stream."""
    state: str
    """running / idle / down / ... as the broker says."""
    ready: int | None
    """None when unknown: the queue is down (see :attr:`down`), never shown as 0."""
    unacked: int | None
    consumers: int
    consumer_utilisation: float | None = None
    publish_rate: float = 0.0
    """Messages/s in (broker's 5 s-averaged rate)."""
    deliver_rate: float = 0.0
    """Messages/s delivered to consumers (deliver + get)."""
    ack_rate: float = 0.0
    redeliver_rate: float = 0.0
    message_bytes: int = 0
    no_ack_rate: float = 0.0
    """Messages/s taken without a manual ack (auto-ack deliveries and gets); they leave at once."""
    max_length: int | None = None
    max_length_bytes: int | None = None
    max_priority: int | None = None
    overflow: str | None = None
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict, compare=False)
    oldest_age: float | None = None
    """Age of the oldest ready message (from ``head_message_timestamp``); None = unknown."""
    oldest_age_known: bool = False
    """False when the queue has messages but the publisher set no timestamp."""
    drain_eta: float | None = None
    """Seconds until empty at the current net drain rate; inf = never (growing/flat)."""
    full_eta: float | None = None
    """Seconds until ``max_length`` at the current net fill rate; inf = never; None = no cap."""
    is_dlq: bool = False
    dlq: str | None = None
    """Name of this queue's DLQ, if it has one."""
    dlq_depth: int | None = None
    dlq_growth: int | None = None
    """DLQ depth change since the previous poll."""
    stuck_after: float | None = None
    """Threshold for stuck jobs in this queue (topology or settings)."""
    down: bool = False
    """The queue cannot serve: its node is stopped (classic), or fewer than a majority of
    its members are online (quorum, stream). Depth, lag and ETAs are then None (unknown)."""
    down_reason: str | None = None
    """Why it is down, for a person (None while up)."""
    node: str | None = None
    """The node the queue lives on (classic) or its leader's node (quorum, stream)."""
    leader: str | None = None
    """Replicated queues: the leader's node."""
    members: tuple[str, ...] = ()
    """Replicated queues: the nodes holding a member (empty for classic queues)."""
    online: tuple[str, ...] = ()
    """Replicated queues: the members online now."""
    paused: bool = False
    """An operator paused it (``queuewatch queues pause``): workers do not consume it."""
    rate_limit: float | None = None
    """Its queue-wide rate limit in jobs/s (run-time or topology), if any."""
    scheduled: int | None = None
    """Jobs for this queue waiting for their time in the delay levels (delayed, or waiting
    for a retry), from the job events; None when not known (job events off or not read)."""

    @property
    def depth(self) -> int | None:
        """ready + unacked; None when unknown (a down queue)."""
        if self.ready is None or self.unacked is None:
            return None
        return self.ready + self.unacked

    @property
    def total(self) -> int:
        """ready + unacked as far as known (0 for a down queue: use :attr:`depth` where
        unknown must stay unknown)."""
        return (self.ready or 0) + (self.unacked or 0)

    @property
    def fill(self) -> float | None:
        """Fraction of ``max_length`` in use (None without a cap, or when unknown). Ready
        messages only: ``x-max-length`` counts ready messages, not those delivered and
        unacked (10 workers x prefetch 100 on a 2,000 cap leave the queue empty, not half full)."""
        if not self.max_length or self.ready is None:
            return None
        return min(self.ready / self.max_length, 1.0)

    @property
    def net_rate(self) -> float:
        """Messages/s the queue grows by (negative while draining)."""
        return self.publish_rate - self.ack_rate - self.no_ack_rate

    @property
    def key(self) -> tuple[str, str]:
        return (self.vhost, self.name)

    def ref(self, qualified: bool) -> str:
        return queue_ref(self.vhost, self.name, qualified)


@dataclass(frozen=True)
class NodeStats:
    name: str
    running: bool
    """As seen from the node that answered the poll (:attr:`BrokerInfo.node`): in a partition
    each side calls the other not running."""
    mem_alarm: bool = False
    disk_alarm: bool = False
    mem_used: int | None = None
    mem_limit: int | None = None
    disk_free: int | None = None
    disk_free_limit: int | None = None
    partitions: tuple[str, ...] = ()
    """The nodes this node reports a network partition with (RabbitMQ records one when two
    nodes that each saw the other go down meet again)."""


@dataclass(frozen=True)
class BrokerInfo:
    url: str
    """Management URL with the password masked."""
    version: str | None = None
    cluster_name: str | None = None
    erlang_version: str | None = None
    node: str | None = None
    """The node whose management API answered (node states are as it sees them)."""


BeatState = Literal["fresh", "unknown", "stale"]
"""A worker's heartbeat judged against our feed (:mod:`queuewatch.monitor.freshness`)."""


@dataclass(frozen=True)
class FeedStatus:
    """Whether worker heartbeats can reach the monitor right now."""

    live: bool
    since: float
    """Epoch seconds: live since (continuously), or down since (last known live)."""
    reason: str | None = None
    """Why it is down, for a person (None while live)."""
    checked_at: float | None = None
    """Epoch seconds of the last proof that the feed works end to end (our own probe came
    back through the broker); None: a source that cannot fail (proven at every moment)."""


WorkerState = Literal["up", "not_consuming", "unknown", "stale", "gone", "hung"]
"""up: beating and consuming every queue it should; not_consuming: beating, but some of its
consumers are not live (cancelled by the broker, channel closed, queue missing or down);
unknown: our heartbeat feed is down; stale: silent, connection state unknown; gone: silent
and its connection is closed; hung: silent while the broker still shows its connection."""


@dataclass(frozen=True)
class WorkerStats:
    """A worker as its latest heartbeat (and the broker) describe it."""

    worker_id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    cpu_percent: float
    rss_bytes: int
    in_flight: tuple[InFlightJob, ...]
    jobs_per_second: float
    errors: int
    """Failed + dead-lettered in the last heartbeat interval."""
    last_heartbeat: float
    """Epoch seconds."""
    heartbeat_age: float
    connection_name: str | None = None
    connection_open: bool | None = None
    """Whether the broker still lists the worker's AMQP connection (None: unknown)."""
    hung: bool = False
    """Heartbeats stopped while the broker still shows its connection."""
    heartbeat_state: BeatState = "fresh"
    """fresh; unknown (our heartbeat feed is down or just came back: silence means nothing);
    stale (silent while our feed was live)."""
    consumers: tuple[ConsumerStatus, ...] = ()
    """Per queue the worker should consume: live or not, since when, why (from its heartbeat;
    empty from a worker too old to say: unknown, not "none")."""

    @property
    def not_consuming(self) -> tuple[ConsumerStatus, ...]:
        """The queues the worker should consume but does not (its consumer is not live)."""
        return tuple(c for c in self.consumers if not c.live and c.cause != "paused")

    @property
    def state(self) -> WorkerState:
        """One word for the worker, the same in every face (CLI, console, exporter)."""
        if self.hung:
            return "hung"
        if self.heartbeat_state == "unknown":
            return "unknown"
        if self.heartbeat_state == "stale":
            return "gone" if self.connection_open is False else "stale"
        return "not_consuming" if self.not_consuming else "up"


@dataclass(frozen=True)
class StuckJob:
    job_id: str
    queue: str
    attempt: int
    worker_id: str
    host: str
    pid: int
    started_at: float
    age: float
    threshold: float


@dataclass(frozen=True)
class Alert:
    severity: Severity
    kind: str
    """One of: oldest_age, fill, dlq_growth, stuck_job, hung_worker, worker_not_consuming,
    stalled, orphaned, broker_alarm, node_down, partition, queue_down, members_offline,
    outbox_backlog."""
    target: str
    """The queue, worker or node the alert is about."""
    reason: str
    """A sentence a person can act on."""
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class ProducerStats:
    """An outbox-enabled producer, from its heartbeats (see ``queuewatch.producer.beats``)."""

    producer_id: str
    host: str
    pid: int
    heartbeat_age: float
    heartbeat_state: str
    """``fresh``, ``stale`` (silent while our feed was live) or ``unknown``."""
    outbox_depth: int
    outbox_oldest_age: float | None
    """Seconds the oldest spooled job has waited, on the monitor's clock (None: empty)."""
    outbox_cap: int
    draining: bool
    blocked: bool


@dataclass(frozen=True)
class Snapshot:
    """Everything one poll saw."""

    taken_at: float
    """Epoch seconds."""
    vhost: str | None
    """The vhost polled (None: all)."""
    broker: BrokerInfo
    nodes: tuple[NodeStats, ...] = ()
    queues: tuple[QueueStats, ...] = ()
    workers: tuple[WorkerStats, ...] = ()
    stuck_jobs: tuple[StuckJob, ...] = ()
    stalled_queues: tuple[str, ...] = ()
    """Queue refs (:meth:`QueueStats.ref`: names, ``vhost/name`` for all vhosts)."""
    orphaned_queues: tuple[str, ...] = ()
    alerts: tuple[Alert, ...] = ()
    poll_seconds: float = 0.0
    """How long the poll took."""
    nodes_hidden: str | None = None
    """Why ``nodes`` is empty when the broker would not show them (the user lacks the
    ``monitoring`` tag): node alarms are then unknown, not absent."""
    producers: tuple[ProducerStats, ...] = ()
    """Outbox-enabled producers that sent heartbeats (the spool's depth and age)."""
    heartbeats: FeedStatus | None = None
    """The worker heartbeat feed at poll time (None: not listened to). While it is not
    live, ``workers`` are the last known ones, each ``heartbeat_state`` "unknown"."""

    def age(self, now: float) -> float:
        """Seconds since the poll (how stale this snapshot is at ``now``)."""
        return max(now - self.taken_at, 0.0)

    @property
    def workers_known(self) -> bool:
        """False while worker states are unknown (heartbeat feed down, or not listened to)."""
        return self.heartbeats is not None and self.heartbeats.live

    def queue(self, name: str) -> QueueStats | None:
        for q in self.queues:
            if q.name == name:
                return q
        return None


def plural(n: int, noun: str) -> str:
    """``1 worker``, ``2 workers``, ``0 workers``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def fmt_duration(seconds: float | None) -> str:
    """Human form of a duration: ``unknown``, ``never``, ``4s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    if seconds is None:
        return "unknown"
    if math.isinf(seconds):
        return "never"
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
