"""Turn the management API's queue records into :class:`QueueStats`.

Everything here is pure: a dict from ``/api/queues?columns=...`` in, a frozen value out.
Lag and ETAs follow the conventions of :mod:`queuewatch.monitor.model`: ``None`` is
*unknown* (never 0), ``math.inf`` is *never*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from queuewatch.monitor.kinds import down_reason, kind_of, replicas
from queuewatch.monitor.model import QueueStats
from queuewatch.topology import DLQ_SUFFIX, is_scheduling_queue

#: The queue fields one poll asks for (``columns=``): everything :func:`parse_queue` reads.
MONITOR_QUEUE_COLUMNS: tuple[str, ...] = (
    "name", "vhost", "type", "state", "arguments", "effective_policy_definition",
    "messages", "messages_ready", "messages_unacknowledged", "messages_dlx", "message_bytes",
    "consumers", "consumer_utilisation", "head_message_timestamp",
    "message_stats.publish_details.rate", "message_stats.deliver_get_details.rate",
    "message_stats.ack_details.rate", "message_stats.redeliver_details.rate",
    "message_stats.deliver_no_ack_details.rate", "message_stats.get_no_ack_details.rate",
    "message_stats.ack",
    # where it lives: a classic queue's node; a quorum queue's or stream's leader, members and
    # the members online (see monitor.kinds)
    "node", "leader", "members", "online",
)

#: Rates below this (messages/s) count as zero: the broker's averages leave tiny tails.
RATE_EPSILON = 1e-6


def _rate(stats: Mapping[str, Any], key: str) -> float:
    details = stats.get(key)
    if details:
        value = details.get("rate")
        if value.__class__ is float or value.__class__ is int:
            return float(value)
    return 0.0


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _setting(raw: Mapping[str, Any], arg: str, policy_key: str) -> Any:
    """A queue limit from its ``x-`` argument, else from the effective policy."""
    args = raw.get("arguments")
    if args and arg in args:
        return args[arg]
    policy = raw.get("effective_policy_definition")
    return policy.get(policy_key) if policy and isinstance(policy, Mapping) else None


def oldest_age(ready: int, head_timestamp: Any, now: float) -> float | None:
    """Age of the oldest ready message: 0 when empty, None when nobody stamped it."""
    if ready <= 0:
        return 0.0
    if isinstance(head_timestamp, bool) or not isinstance(head_timestamp, int | float):
        return None
    return max(now - float(head_timestamp), 0.0)


def drain_eta(ready: int, net_rate: float) -> float:
    """Seconds until ``ready`` reaches 0 at ``net_rate`` (msg/s growth); inf while not draining."""
    if ready <= 0:
        return 0.0
    if net_rate >= -RATE_EPSILON:
        return math.inf
    return ready / -net_rate


def full_eta(ready: int, max_length: int | None, net_rate: float) -> float | None:
    """Seconds until ``ready`` reaches ``max_length`` (the cap counts ready messages only) at
    ``net_rate``; None without a cap, inf while not filling."""
    if not max_length:
        return None
    if ready >= max_length:
        return 0.0
    if net_rate <= RATE_EPSILON:
        return math.inf
    return (max_length - ready) / net_rate


def is_infrastructure(name: str) -> bool:
    """Queues nobody is meant to consume: DLQs, queuewatch's delay levels and due queues."""
    return name.endswith(DLQ_SUFFIX) or is_scheduling_queue(name)


def parse_queue(raw: Mapping[str, Any], now: float, stuck_after: float | None = None,
                scheduled: Mapping[str, int] | None = None) -> QueueStats:
    """One queue record (management API) as :class:`QueueStats`, without DLQ links;
    ``scheduled``: jobs waiting in the delay levels per target queue (None: unknown), for
    job queues (DLQs and delay levels have none).

    A queue that is down (:mod:`queuewatch.monitor.kinds`) gets None for depth, lag and
    ETAs: the broker has no current numbers for it, and 0 would read as "empty".

    A delay level's or due queue's ready count includes the messages its at-least-once
    dead-letter worker holds (``messages_dlx``: expired, on their way on, or refused by a full
    job queue and waiting for room): the broker does not count them as ready, and a due queue
    holding a full queue's jobs would read 0. Where ``messages_dlx`` is not reported yet,
    ``messages`` minus ready and unacked is what the worker holds."""
    kind = kind_of(str(raw.get("type") or "classic"))
    reps = replicas(raw, kind)
    why_down = down_reason(raw, kind, reps)
    stats = raw.get("message_stats") or {}
    ready = int(raw.get("messages_ready") or 0)
    unacked = int(raw.get("messages_unacknowledged") or 0)
    if is_scheduling_queue(raw["name"]):
        # (a new quorum queue's record can lack ``messages_dlx`` for a few seconds while
        # ``messages`` already counts what its dead-letter worker holds)
        total = raw.get("messages")
        held = int(raw.get("messages_dlx") or 0)
        if isinstance(total, int):
            held = max(held, total - ready - unacked)
        ready += held
    args = dict(raw.get("arguments") or {})
    publish = _rate(stats, "publish_details")
    ack = _rate(stats, "ack_details")
    no_ack = _rate(stats, "deliver_no_ack_details") + _rate(stats, "get_no_ack_details")
    net = publish - ack - no_ack
    max_length = _int_or_none(_setting(raw, "x-max-length", "max-length"))
    utilisation = raw.get("consumer_utilisation")
    age = oldest_age(ready, raw.get("head_message_timestamp"), now)
    dlx = _setting(raw, "x-dead-letter-exchange", "dead-letter-exchange")
    dlrk = _setting(raw, "x-dead-letter-routing-key", "dead-letter-routing-key")
    down = why_down is not None
    drain = drain_eta(ready, net) if kind.drains else None
    node = raw.get("node")
    return QueueStats(
        vhost=str(raw.get("vhost", "")),
        name=str(raw["name"]),
        type=kind.name,
        state=str(raw.get("state") or "unknown"),
        ready=None if down else ready,
        unacked=None if down else unacked,
        consumers=int(raw.get("consumers") or 0),
        consumer_utilisation=float(utilisation) if isinstance(utilisation, int | float) else None,
        publish_rate=publish,
        deliver_rate=_rate(stats, "deliver_get_details"),
        ack_rate=ack,
        redeliver_rate=_rate(stats, "redeliver_details"),
        no_ack_rate=no_ack,
        message_bytes=int(raw.get("message_bytes") or 0),
        max_length=max_length,
        max_length_bytes=_int_or_none(_setting(raw, "x-max-length-bytes", "max-length-bytes")),
        max_priority=_int_or_none(args.get("x-max-priority")),
        overflow=_str_or_none(_setting(raw, "x-overflow", "overflow")),
        dead_letter_exchange=_str_or_none(dlx),
        dead_letter_routing_key=_str_or_none(dlrk),
        arguments=args,
        oldest_age=None if down else age,
        oldest_age_known=age is not None and not down,
        drain_eta=None if down else drain,
        full_eta=None if down else full_eta(ready, max_length, net),
        is_dlq=raw["name"].endswith(DLQ_SUFFIX),
        stuck_after=stuck_after,
        down=down,
        down_reason=why_down,
        node=None if node in (None, "") else str(node),
        leader=None if reps is None else reps.leader,
        members=() if reps is None else reps.members,
        online=() if reps is None else reps.online,
        scheduled=None if scheduled is None or is_infrastructure(str(raw["name"]))
        else scheduled.get(str(raw["name"]), 0),
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def ack_count(raw: Mapping[str, Any]) -> int | None:
    """The queue's cumulative ack counter, if the broker has reported one."""
    stats = raw.get("message_stats") or {}
    return _int_or_none(stats.get("ack")) if isinstance(stats, Mapping) else None
