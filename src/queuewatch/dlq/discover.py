"""Which queues hold dead letters, found from how RabbitMQ routes them, not from names alone.

A queue is a dead-letter queue (DLQ) when some queue dead-letters into it, by its
``x-dead-letter-exchange`` / ``x-dead-letter-routing-key`` arguments or by the
``dead-letter-exchange`` / ``dead-letter-routing-key`` of its effective policy (an argument
wins over the policy, as in RabbitMQ). The route is followed as RabbitMQ follows it: the
default exchange (``""``) delivers to the queue named by the routing key; a named exchange
to the queues bound to it (fanout and headers: all of them; direct: the binding key equal
to the routing key; topic: the binding pattern matching it). Without a dead-letter routing
key RabbitMQ keeps the message's own routing keys: the source queue's binding keys (and its
name, for the default exchange) stand in for them.

Also DLQs by convention: queuewatch's ``Q.dlq`` and Dramatiq's ``Q.XQ`` (Dramatiq declares
the dead-lettering too; the name alone covers a queue whose source is gone).

:func:`find_dead_letter_queues` is a pure function over management API records (the
monitor's queue records carry ``arguments`` and ``effective_policy_definition``; bindings and
exchanges are optional); :func:`discover` fetches them and calls it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from queuewatch.broker.management import ManagementClient
from queuewatch.broker.wire import Connection
from queuewatch.dlq.channel import queue_depth
from queuewatch.errors import NotFound, QueuewatchError
from queuewatch.topology import DLQ_SUFFIX, is_scheduling_queue

DRAMATIQ_SUFFIX = ".XQ"
#: Fields of ``/api/queues`` the discovery reads.
QUEUE_COLUMNS = ("name", "arguments", "effective_policy_definition", "messages_ready",
                 "consumers")


@dataclass(frozen=True)
class DeadLetterRoute:
    """Where one queue's dead letters go."""

    exchange: str
    routing_key: str | None
    """None: RabbitMQ keeps each message's own routing keys."""
    via: str
    """``arguments`` or ``policy``."""


@dataclass(frozen=True)
class FoundDlq:
    """A queue holding dead letters, and why it is one."""

    name: str
    sources: tuple[str, ...] = ()
    """The queues dead-lettering into it (sorted)."""
    how: tuple[str, ...] = ()
    """Why it is a DLQ: ``arguments of Q``, ``policy of Q``, ``name ends in .dlq``,
    ``Dramatiq .XQ``."""
    messages: int | None = None
    """Ready messages (as the management API last counted them), if known."""
    consumers: int | None = None
    """Consumers on it, if known (a DLQ normally has none: reading one with consumers
    would take messages from them for a moment)."""


def dead_letter_route(queue: Mapping[str, Any]) -> DeadLetterRoute | None:
    """Where ``queue`` (a management API record) dead-letters, or None when it does not."""
    args = queue.get("arguments") or {}
    policy = queue.get("effective_policy_definition") or {}
    if not isinstance(args, Mapping):
        args = {}
    if not isinstance(policy, Mapping):
        policy = {}
    if "x-dead-letter-exchange" in args:
        exchange, via = args["x-dead-letter-exchange"], "arguments"
    elif "dead-letter-exchange" in policy:
        exchange, via = policy["dead-letter-exchange"], "policy"
    else:
        return None
    key = args.get("x-dead-letter-routing-key", policy.get("dead-letter-routing-key"))
    return DeadLetterRoute(str(exchange), None if key is None else str(key), via)


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more words."""
    p, k = pattern.split("."), key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(p):
            return j == len(k)
        if p[i] == "#":
            return any(match(i + 1, jj) for jj in range(j, len(k) + 1))
        return j < len(k) and p[i] in ("*", k[j]) and match(i + 1, j + 1)

    return match(0, 0)


def _targets(
    source: Mapping[str, Any], route: DeadLetterRoute, names: set[str],
    bound: Mapping[str, list[tuple[str, str]]], types: Mapping[str, str],
    keys_of: Mapping[str, list[str]],
) -> set[str]:
    name = str(source.get("name", ""))
    keys = [route.routing_key] if route.routing_key is not None else [*keys_of.get(name, []), name]
    if route.exchange == "":
        return {k for k in keys if k in names and k != name}
    kind = types.get(route.exchange, "direct")
    found: set[str] = set()
    for dest, binding_key in bound.get(route.exchange, []):
        if kind == "topic":
            hit = any(topic_matches(binding_key, k) for k in keys)
        else:
            hit = kind in ("fanout", "headers") or binding_key in keys
        if hit:
            found.add(dest)
    found.discard(name)
    return found


def find_dead_letter_queues(
    queues: Sequence[Mapping[str, Any]],
    bindings: Iterable[Mapping[str, Any]] | None = None,
    exchanges: Iterable[Mapping[str, Any]] | None = None,
) -> list[FoundDlq]:
    """Every DLQ among ``queues`` (management API records of one vhost), sorted by name.

    ``bindings``/``exchanges`` (``/api/bindings``, ``/api/exchanges`` records): needed to
    follow dead-letter exchanges other than the default one; without them such routes are
    not followed (the conventions still apply)."""
    records = {str(q.get("name")): q for q in queues if q.get("name") is not None}
    names = set(records)
    bound: dict[str, list[tuple[str, str]]] = {}
    keys_of: dict[str, list[str]] = {}
    for b in bindings or ():
        if b.get("destination_type", "queue") != "queue":
            continue
        src, dest, key = str(b.get("source", "")), str(b.get("destination")), str(b.get("routing_key", ""))
        keys_of.setdefault(dest, []).append(key)
        if src:
            bound.setdefault(src, []).append((dest, key))
    types = {str(e.get("name")): str(e.get("type", "direct")) for e in exchanges or ()}
    sources: dict[str, set[str]] = {}
    how: dict[str, list[str]] = {}
    for name, record in records.items():
        route = dead_letter_route(record)
        if route is None or is_scheduling_queue(name):
            continue  # queuewatch's delay levels and due queues deliver jobs, not dead letters
        for target in _targets(record, route, names, bound, types, keys_of):
            sources.setdefault(target, set()).add(name)
            how.setdefault(target, []).append(f"{route.via} of {name}")
    for name in names:
        if name.endswith(DLQ_SUFFIX):
            how.setdefault(name, []).append(f"name ends in {DLQ_SUFFIX}")
        elif name.endswith(DRAMATIQ_SUFFIX):
            how.setdefault(name, []).append(f"Dramatiq {DRAMATIQ_SUFFIX}")
        base = name.removesuffix(DLQ_SUFFIX).removesuffix(DRAMATIQ_SUFFIX)
        if base != name and base in names:
            sources.setdefault(name, set()).add(base)
    return [FoundDlq(name, tuple(sorted(sources.get(name, ()))), tuple(sorted(set(how[name]))),
                     _count(records[name].get("messages_ready")),
                     _count(records[name].get("consumers")))
            for name in sorted(how)]


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def dlqs_of(queue: str, found: Iterable[FoundDlq]) -> list[FoundDlq]:
    """The DLQs ``queue`` dead-letters into (or is named for)."""
    return [f for f in found if queue in f.sources]


async def discover(mgmt: ManagementClient, vhost: str) -> list[FoundDlq]:
    """Every DLQ of ``vhost`` (see :func:`find_dead_letter_queues`); three management API
    calls (queues with ``columns=``, bindings, exchanges)."""
    queues = await mgmt.queues(vhost, columns=QUEUE_COLUMNS)
    bindings = await mgmt.bindings(vhost)
    exchanges = await mgmt.exchanges(vhost)
    return find_dead_letter_queues(queues, bindings, exchanges)


class NotADeadLetterQueue(QueuewatchError):
    """The name given is a job queue whose dead letters reach several queues: which one
    to read is for the operator to say."""


async def _exists(connection: Connection, queue: str) -> bool:
    try:
        await queue_depth(connection, queue)
    except NotFound:
        return False
    return True


async def resolve_dlq(
    connection: Connection, mgmt: ManagementClient | None, vhost: str, name: str,
) -> str:
    """The queue holding the dead letters ``name`` means (what ``queuewatch dlq ... NAME``
    reads): ``NAME.dlq`` or Dramatiq's ``NAME.XQ`` when one exists; else, when ``NAME``
    dead-letters elsewhere (arguments or policy), the one queue its dead letters reach;
    else ``NAME`` itself (reading a queue with consumers is refused later, unless forced:
    :class:`~queuewatch.dlq.queue.QueueHasConsumers`). A job queue whose dead letters reach
    several queues is refused (:class:`NotADeadLetterQueue`): name one. Without a management
    API (``mgmt`` None or failing) only the names are tried."""
    if not name.endswith((DLQ_SUFFIX, DRAMATIQ_SUFFIX)):
        for candidate in (name + DLQ_SUFFIX, name + DRAMATIQ_SUFFIX):
            if await _exists(connection, candidate):
                return candidate
    if not await _exists(connection, name):
        raise NotFound(f"queue {name!r} does not exist in this vhost")
    if mgmt is None:
        return name
    try:
        info = await mgmt.queue(vhost, name)
        route = dead_letter_route(info or {})
        if route is None:
            return name
        found = await discover(mgmt, vhost)
    except QueuewatchError:
        return name  # no management API: the consumer guard still protects a live queue
    if any(f.name == name for f in found):
        return name  # something dead-letters into it: it is a DLQ (that dead-letters on)
    targets = [f.name for f in dlqs_of(name, found)]
    if len(targets) == 1:
        return targets[0]
    if not targets:
        # Its dead letters reach no queue (or one this cannot tell): the name means the
        # queue itself (a delay level, say); the consumer guard keeps live work untouched.
        return name
    where = f"exchange {route.exchange or '(default)'!r}" + (
        f" with routing key {route.routing_key!r}" if route.routing_key is not None else "")
    raise NotADeadLetterQueue(
        f"{name!r} is a job queue whose dead letters ({route.via}: {where}) reach "
        f"{len(targets)} queues: name one of {', '.join(repr(t) for t in targets)}")
