"""Where a replay's republish lands, and whether that queue would keep it.

A queue with a length limit whose overflow drops its oldest messages (``drop-head``,
RabbitMQ's default for ``x-max-length`` / ``max-length``) confirms every publish and then
drops what is past the limit: a replay into it would ack dead letters that are then gone
(measured: 4,000 dead letters replayed into a queue of ``x-max-length 1500``, 2,500 lost,
reported as replayed). :class:`DropsHead` tells, per route, whether a queue it reaches
drops its head; the replay keeps those dead letters and reports them (``drops-head``).

A route is followed as RabbitMQ would: the default exchange to the queue named by the
routing key; a named exchange to the queues bound to it (fanout and headers: all of them;
direct: the binding key equal to the routing key; topic: the pattern matching it), through
exchange-to-exchange bindings too. Needs the management API (queue arguments and policies):
when it cannot be read (not there, down, cut, no right to read it), a dead letter whose route
is not known yet is kept too (``unchecked``): its queue may drop it (measured before: 1,200
dead letters replayed into a ``drop-head`` queue while the API was cut, "replayed 1200",
700 gone). The API is asked again after :data:`RETRY_AFTER`, so a blip keeps only a few.
With ``--skip-limit-check`` (``skip_unreadable``) the operator vouches that the queues it
cannot read have no such limit: those dead letters are sent, and counted; a queue the API
says drops its head still keeps them. A move is refused the same way (:func:`move_refusal`).

The shovel cannot keep single dead letters, so it is not taken into such a queue, nor into
a ``reject-publish`` one without room for the whole DLQ (:func:`dest_refusal`); what a
full queue still refuses under a shovel is found after it (:func:`nacked_back`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

from queuewatch.broker.management import ManagementClient
from queuewatch.broker.wire import Connection
from queuewatch.dlq.channel import once_fewer_consumers
from queuewatch.dlq.discover import topic_matches
from queuewatch.dlq.kinds import UNCHECKED_WAY_OUT, QueueKind, drops_head
from queuewatch.dlq.model import Route
from queuewatch.dlq.peek import peek
from queuewatch.errors import QueuewatchError

#: Exchange-to-exchange hops followed at most.
MAX_HOPS = 4
#: After the management API failed, how long routes not yet known are kept unchecked
#: without asking it again (each try could wait for its timeout).
RETRY_AFTER = 5.0

#: Why a republish on a route must not be sent: (reason, detail) as the replay reports it.
Keep = tuple[Literal["drops-head", "unchecked"], str]


def queues_reached(route: Route, bindings: Sequence[Mapping[str, Any]],
                   types: Mapping[str, str]) -> set[str]:
    """The queues a message published on ``route`` reaches (by the bindings given)."""
    if route.exchange == "":
        return {route.routing_key}
    found: set[str] = set()
    seen: set[str] = set()
    todo = [route.exchange]
    for _ in range(MAX_HOPS + 1):
        nxt: list[str] = []
        for exchange in todo:
            if exchange in seen:
                continue
            seen.add(exchange)
            kind = types.get(exchange, "direct")
            for b in bindings:
                if b.get("source") != exchange:
                    continue
                key = str(b.get("routing_key", ""))
                if kind == "topic":
                    hit = topic_matches(key, route.routing_key)
                else:
                    hit = kind in ("fanout", "headers") or key == route.routing_key
                if not hit:
                    continue
                dest = str(b.get("destination", ""))
                if b.get("destination_type") == "exchange":
                    nxt.append(dest)
                else:
                    found.add(dest)
        todo = nxt
    return found


class DropsHead:
    """``await check(route)``: why a republish on ``route`` must not be sent, or None:
    ``drops-head`` (a queue it reaches drops its head past a length limit: it would be
    confirmed, then dropped) or ``unchecked`` (the management API could not be read, so
    that is not known). Looked up once per route.

    ``skip_unreadable`` (``--skip-limit-check``): a route that cannot be checked is let
    through (the operator vouches for its queues), counted in :attr:`vouched`, and checked
    again after :data:`RETRY_AFTER` like any other (a limit read then still keeps them)."""

    def __init__(self, management: Callable[[], AbstractAsyncContextManager[ManagementClient]],
                 vhost: str, skip_unreadable: bool = False) -> None:
        self._management = management
        self._vhost = vhost
        self._skip_unreadable = skip_unreadable
        self._known: dict[Route, str | None] = {}
        self._failed: tuple[float, str] | None = None
        self._bindings: tuple[list[dict[str, Any]], dict[str, str]] | None = None
        self.vouched = 0
        """Republishes let through unchecked under ``skip_unreadable``."""

    async def __call__(self, route: Route) -> Keep | None:
        if route not in self._known:
            if self._failed is not None and time.monotonic() - self._failed[0] < RETRY_AFTER:
                return self._unchecked(self._failed[1])
            try:
                self._known[route] = await self._look(route)
            except QueuewatchError as exc:
                why = (f"cannot tell whether route {route.describe()} reaches a queue that drops its "
                       f"oldest messages past a length limit (management API: {exc}); kept: "
                       f"replay it again {UNCHECKED_WAY_OUT}")
                self._failed = (time.monotonic(), why)
                return self._unchecked(why)
            self._failed = None
        drop = self._known[route]
        return None if drop is None else ("drops-head", drop)

    def _unchecked(self, why: str) -> Keep | None:
        if not self._skip_unreadable:
            return "unchecked", why
        self.vouched += 1
        return None

    async def _look(self, route: Route) -> str | None:
        async with self._management() as mgmt:
            if route.exchange == "":
                queues = {route.routing_key}
            else:
                if self._bindings is None:  # read once per replay
                    self._bindings = (await mgmt.bindings(self._vhost), {
                        str(e.get("name", "")): str(e.get("type", "direct"))
                        for e in await mgmt.exchanges(self._vhost)})
                queues = queues_reached(route, *self._bindings)
            async for queue, limit in _dropping(mgmt, self._vhost, sorted(queues)):
                return (f"reaches {queue!r}, whose length limit ({limit}) drops its oldest "
                        "messages (overflow drop-head): confirmed, then dropped; set overflow "
                        "reject-publish")
        return None


async def _dropping(mgmt: ManagementClient, vhost: str,
                    queues: list[str]) -> AsyncIterator[tuple[str, str]]:
    for queue in queues:
        info = await mgmt.queue(vhost, queue)
        if info is None or str(info.get("type") or "classic") == "stream":
            continue
        limit = drops_head(info.get("arguments") or {}, info.get("effective_policy_definition"))
        if limit is not None:
            yield queue, limit


def move_refusal(to_queue: str, target: QueueKind) -> str | None:
    """Why a move into ``to_queue`` (its kind ``target``) is refused, or None: it makes room
    by dropping its oldest messages (each move would be confirmed, then dropped), or whether
    it does could not be read (pass ``target.vouched()`` when the operator vouches)."""
    if target.drops_head is not None:
        return (f"{to_queue!r} has a length limit ({target.drops_head}) with overflow "
                "drop-head: RabbitMQ confirms every moved message and then drops the oldest "
                "ones past the limit, so queuewatch does not move into it. Set x-overflow / "
                "policy overflow to reject-publish (what does not fit then stays here, "
                "reported), or move into a queue without a limit")
    if target.drops_head_unknown is not None:
        return (f"cannot tell whether {to_queue!r} drops its oldest messages past a length "
                f"limit ({target.drops_head_unknown}); RabbitMQ would confirm each moved "
                "message and then drop them, so queuewatch does not move into it; move "
                f"{UNCHECKED_WAY_OUT}")
    return None


def _smallest(args: Mapping[str, Any], policy: Mapping[str, Any], arg: str,
              key: str) -> int | None:
    found = [int(v) for v in (args.get(arg), policy.get(key))
             if isinstance(v, int | float) and not isinstance(v, bool)]
    return min(found) if found else None


def dest_refusal(dest: str, info: Mapping[str, Any], dlq_info: Mapping[str, Any],
                 total: int) -> str | None:
    """Why the shovel must not replay ``total`` dead letters into the job queue ``dest``
    (its management record ``info``), or None.

    A length limit that drops the oldest messages (``drop-head``, RabbitMQ's default): the
    shovel's republishes would be confirmed, the dead letters acked, and then messages past
    the limit dropped (measured: 4,000 into ``x-max-length 1500``, 2,500 lost). With
    ``reject-publish`` the queue nacks what does not fit and the shovel puts it back in the
    DLQ, counted by nobody (the replay reported "replayed 1500" of 4,000 with exit 0): the
    shovel is taken only when the queue has room for the whole DLQ (by the statistics, a few
    seconds old; what still comes back nacked is looked at after, :func:`nacked_back`). The
    per-message replay keeps and reports both (``drops-head``, ``publish-failed``)."""
    args = info.get("arguments") or {}
    policy = info.get("effective_policy_definition") or {}
    policy = policy if isinstance(policy, Mapping) else {}
    limit = drops_head(args, policy)
    if limit is not None:
        return (f"{dest!r} drops its oldest messages past its length limit ({limit}): the "
                "shovel's republishes would be confirmed and then dropped (the per-message "
                "replay keeps them and says why)")
    most = _smallest(args, policy, "x-max-length", "max-length")
    if most is not None:
        room = max(most - int(info.get("messages") or 0), 0)
        if room < total:
            return (f"{dest!r} has room for {room} of the {total} dead letters (length limit "
                    f"{most}, overflow reject-publish): the shovel cannot report those it "
                    "refuses (the per-message replay keeps them and says so)")
    most_bytes = _smallest(args, policy, "x-max-length-bytes", "max-length-bytes")
    if most_bytes is not None:
        room = max(most_bytes - int(info.get("message_bytes") or 0), 0)
        need = dlq_info.get("message_bytes")
        if not isinstance(need, int) or room < need:
            held = "an unknown number of" if need is None else str(need)
            return (f"{dest!r} has room for {room} bytes (length limit {most_bytes} bytes, "
                    f"overflow reject-publish) and the DLQ holds {held} bytes: the shovel "
                    "cannot report those it refuses (the per-message replay keeps them and "
                    "says so)")
    return None


async def nacked_back(connection: Connection, queue: str) -> bool:
    """After the shovel, held straight back into the DLQ: whether the DLQ's head may hold
    dead letters the job queue refused (full, ``reject-publish``). The shovel puts a nacked
    dead letter back in place (at the head once everything before it left), marked
    redelivered; those held back re-enter at the tail as new messages. So a head that is
    not redelivered proves there were none; one that is could also be held back dead
    letters the shovel was sent again and gave back as it ended: the per-message replay
    then looks at everything held back. Asked only when the job queue has a length limit
    (:attr:`queuewatch.dlq.shovel.Plan.dest_limited`)."""
    await once_fewer_consumers(connection, queue)
    page = await peek(connection, queue, 0, 1)
    return bool(page.items) and page.items[0].redelivered
