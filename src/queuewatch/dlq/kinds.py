"""What each queue type lets the DLQ actions do: one table, looked up once per queue.

=========  ======================================  =========================================
type       reads (list, show, export, dry runs),   notes
           replay, delete
=========  ======================================  =========================================
classic    yes                                     a read puts every message back in place
quorum     yes, unless a delivery limit applies    a read puts messages back where RabbitMQ
                                                   chooses (head or tail) and adds 1 to each
                                                   one's ``x-delivery-count``
quorum +   refused                                 RabbitMQ 3.x counts every read that puts a
limit                                              message back as a delivery: past the limit
                                                   it dead-letters the message, or drops it
                                                   without a dead-letter exchange (measured on
                                                   3.10.8: four reads of a queue with
                                                   ``x-delivery-limit: 3`` dropped every message)
stream     refused                                 a stream keeps every message until its
                                                   retention removes it: nothing can be taken
                                                   out of it one by one
=========  ======================================  =========================================

Purge and import work on classic and quorum queues (import on a stream too: it only
publishes). The type and the limit come from the management API (``arguments`` and the
effective policy); without it, an AMQP probe on a throwaway connection tells the type
(``basic.qos`` global + ``basic.consume``: a quorum queue refuses it before delivering
anything, a stream refuses it for want of a per-consumer prefetch) but not the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, Literal

from queuewatch.aio import wait_for
from queuewatch.broker import wire
from queuewatch.broker.management import ManagementClient
from queuewatch.broker.wire import Connection
from queuewatch.dlq.channel import close_quietly, raw_channel
from queuewatch.dlq.watch import OP_TIMEOUT, Interrupted
from queuewatch.errors import NotFound, QueuewatchError

#: How long to wait for the statistics of a new quorum queue (they carry its policy).
STATS_WAIT = 15.0

QueueType = Literal["classic", "quorum", "stream"]
Action = Literal["read", "replay", "delete", "purge", "import"]
#: Actions that consume the queue and put back what they do not remove.
CONSUMING: frozenset[Action] = frozenset({"read", "replay", "delete"})
#: The option by which the operator vouches that a queue whose length limit cannot be read
#: (no management API) has none that drops its head (:meth:`QueueKind.vouched`).
SKIP_LIMIT_CHECK = "--skip-limit-check"
#: How a refusal or a kept dead letter for an unreadable length limit ends: the ways out.
UNCHECKED_WAY_OUT = (f"once the management API answers, or with {SKIP_LIMIT_CHECK} if the "
                     "destination has no length limit that drops head")


class QueueKindRefused(QueuewatchError):
    """The queue's type does not allow this DLQ action (one line says why and what to do)."""


@dataclass(frozen=True)
class QueueKind:
    queue: str
    type: QueueType
    delivery_limit: int | None = None
    """The quorum queue's delivery limit (the lowest of argument and policy), if any."""
    limit_unknown: str | None = None
    """Why the delivery limit of a quorum queue could not be read (None: it was read)."""
    drops_head: str | None = None
    """The queue's length limit when RabbitMQ makes room by dropping its oldest messages
    (``x-overflow`` / policy ``overflow`` ``drop-head``, the default), e.g.
    ``x-max-length 5``; None without a limit, with ``reject-publish``, or not known."""
    drops_head_unknown: str | None = None
    """Why a length limit dropping the oldest messages could not be looked for (no
    management API: the probe tells only the type); None when it was."""

    def refusal(self, action: Action) -> str | None:
        """Why ``action`` is refused on this queue, or None when it is allowed."""
        verb = {"read": "read", "replay": "replay", "delete": "delete from",
                "purge": "purge", "import": "import into"}[action]
        if self.type == "stream" and action != "import":
            return (f"{self.queue!r} is a stream: queuewatch cannot {verb} it. The DLQ commands "
                    "work on classic and quorum queues (a stream keeps every message until its "
                    "retention removes it, so dead letters cannot be taken out one by one); "
                    "read a stream with a stream consumer (x-stream-offset)")
        if action == "import" and self.drops_head is not None:
            return (f"{self.queue!r} has a length limit ({self.drops_head}) with overflow "
                    "drop-head: RabbitMQ confirms every imported message and then drops the "
                    "oldest ones past the limit (dead letters already there, or imported a "
                    "moment before), so queuewatch does not import into it. Set x-overflow / "
                    "policy overflow to reject-publish (a full queue then refuses, and the "
                    "import reports it), or import into a queue without a limit")
        if action == "import" and self.drops_head_unknown is not None:
            return (f"cannot tell whether {self.queue!r} drops its oldest messages past a "
                    f"length limit ({self.drops_head_unknown}); RabbitMQ would confirm each "
                    "imported message and then drop them, so queuewatch does not import into "
                    f"it; import {UNCHECKED_WAY_OUT}")
        if self.type != "quorum" or action not in CONSUMING:
            return None
        if self.delivery_limit is not None:
            return (f"{self.queue!r} is a quorum queue with a delivery limit of "
                    f"{self.delivery_limit}: RabbitMQ counts every look at a message as a "
                    "delivery and past the limit dead-letters it (or drops it without a "
                    f"dead-letter exchange), so queuewatch does not {verb} it. Take the limit off "
                    "this queue (x-delivery-limit / policy delivery-limit), or move its dead "
                    "letters to a queue without one (a shovel)")
        if self.limit_unknown is not None:
            return (f"cannot tell whether quorum queue {self.queue!r} has a delivery limit "
                    f"({self.limit_unknown}); past one, every look at a message could "
                    f"dead-letter or drop it, so queuewatch does not {verb} it")
        return None

    def vouched(self) -> QueueKind:
        """This kind with a length limit that could not be read taken as none dropping the
        head (``--skip-limit-check``: the operator vouches for it); a limit that was read
        still counts."""
        return replace(self, drops_head_unknown=None)

    def require(self, action: Action) -> None:
        why = self.refusal(action)
        if why is not None:
            raise QueueKindRefused(why)


def _limit(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def kind_from_info(queue: str, info: Mapping[str, Any]) -> QueueKind:
    """The kind of ``queue`` from its management API record."""
    qtype = str(info.get("type") or "classic")
    if qtype not in ("classic", "quorum", "stream"):
        qtype = "classic"  # e.g. a plugin's type: it behaves as a classic queue to a client
    args = info.get("arguments") or {}
    policy = info.get("effective_policy_definition")
    drops = None if qtype == "stream" else drops_head(args, policy)
    if qtype != "quorum":
        return QueueKind(queue, qtype, drops_head=drops)  # type: ignore[arg-type]
    limits = [_limit(args.get("x-delivery-limit"))]
    if isinstance(policy, Mapping):
        limits.append(_limit(policy.get("delivery-limit")))
    found = [n for n in limits if n is not None]
    limit = min(found) if found else None
    unknown = None
    if limit is None and not isinstance(policy, Mapping):
        unknown = ("RabbitMQ has not published its statistics, so a policy's limit is not "
                   "known; a new queue has them within seconds, a queue without a leader not")
    return QueueKind(queue, "quorum", limit, unknown, drops)


def drops_head(args: Mapping[str, Any], policy: Any) -> str | None:
    """The length limit of a queue whose overflow drops the oldest messages (see
    :attr:`QueueKind.drops_head`), from its arguments and effective policy (an argument
    wins over the policy for the overflow behaviour, as in RabbitMQ)."""
    policy = policy if isinstance(policy, Mapping) else {}
    overflow = args.get("x-overflow") or policy.get("overflow") or "drop-head"
    if overflow != "drop-head":
        return None
    limits = [f"{name} {value}" for name, value in (
        ("x-max-length", args.get("x-max-length")),
        ("x-max-length-bytes", args.get("x-max-length-bytes")),
        ("policy max-length", policy.get("max-length")),
        ("policy max-length-bytes", policy.get("max-length-bytes"))) if value is not None]
    return ", ".join(limits) or None


async def probe_type(connection: Connection, queue: str) -> QueueType:
    """The queue's type, told by RabbitMQ's answer to a global prefetch (see the module
    doc). ``connection`` is closed by RabbitMQ for a quorum queue: pass a throwaway one."""
    got = asyncio.Event()

    async def on_message(message: Any) -> None:
        got.set()

    try:
        async with raw_channel(connection) as raw:
            await wait_for(raw.basic_qos(prefetch_count=1, global_=True), OP_TIMEOUT)
            ok = await wait_for(raw.basic_consume(queue, on_message), OP_TIMEOUT)
            await wait_for(raw.basic_cancel(ok.consumer_tag), OP_TIMEOUT)
    except wire.GlobalQosRefused:
        return "quorum"
    except wire.ChannelPreconditionFailed as exc:
        if "prefetch" in str(exc):
            return "stream"
        raise Interrupted(f"cannot tell the type of {queue!r}: {exc}") from exc
    except wire.ChannelNotFound as exc:
        raise NotFound(f"queue {queue!r} does not exist in this vhost") from exc
    except (TimeoutError, wire.AMQPError, ConnectionError) as exc:
        raise Interrupted(f"cannot tell the type of {queue!r}: {type(exc).__name__}: {exc}") from exc
    return "classic"


async def resolve(
    queue: str, vhost: str,
    management: Callable[[], AbstractAsyncContextManager[ManagementClient]],
    throwaway: Callable[[], Awaitable[Connection]],
) -> QueueKind:
    """The kind of ``queue``: from the management API, else from an AMQP probe on a
    connection opened by ``throwaway()`` (then closed)."""
    deadline = time.monotonic() + STATS_WAIT
    try:
        async with management() as mgmt:
            while True:
                info = await mgmt.queue(vhost, queue)
                if info is None:
                    raise NotFound(f"queue {queue!r} does not exist in this vhost")
                kind = kind_from_info(queue, info)
                if kind.limit_unknown is None or time.monotonic() > deadline:
                    return kind
                await asyncio.sleep(1.0)  # a new quorum queue: its statistics come soon
    except NotFound:
        raise
    except QueuewatchError as exc:
        why = f"no management API: {exc}"
    conn = await throwaway()
    try:
        qtype = await probe_type(conn, queue)
    finally:
        await close_quietly(conn)
    return QueueKind(queue, qtype, None, why if qtype == "quorum" else None,
                     drops_head_unknown=why if qtype != "stream" else None)

