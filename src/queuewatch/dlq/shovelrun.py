"""Running a replay shovel: its definition, the replay shovels a vhost has, and the wait
until one has moved its share and removed itself (:mod:`queuewatch.dlq.shovel` and
:mod:`queuewatch.dlq.held`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from queuewatch.broker.management import ManagementClient, q
from queuewatch.broker.wire import Connection
from queuewatch.dlq.channel import queue_counts
from queuewatch.dlq.model import REPLAY_SHOVEL_PREFIX
from queuewatch.dlq.peek import ProgressFn
from queuewatch.errors import BrokerError, QueuewatchError

POLL_SECONDS = 0.25
"""How often the management API is asked whether the shovel still exists (it is not free
for the broker)."""
FAST_POLL_SECONDS = 0.05
"""How often the source queue's depth and consumers are read over AMQP while a shovel moves
it (a passive declare)."""
STATUS_EVERY = 8
"""Polls between two looks at the shovel's status (a shovel that cannot start)."""
STALL_SECONDS = 30.0
"""The source did not shrink for this long while the shovel existed: stop it and report."""
SRC_PREFETCH = 2000
"""A replay shovel's prefetch when (nearly) every message goes on to one queue."""
NOT_RUNNING_SECONDS = 3.0
"""A replay shovel whose definition exists but that has no status on any node at two looks
this far apart is not running, and never will: see :func:`not_running`."""


class LostSight(Exception):
    """The management API or the AMQP link went away while the shovel moved the DLQ."""


class Stalled(Exception):
    """The shovel moved nothing for :data:`STALL_SECONDS`."""


class Moved:
    """What the shovel had moved at the last look (for the report)."""

    def __init__(self) -> None:
        self.count = 0


def definition(vhost: str, src_queue: str, prefetch: int, **dest: str) -> dict[str, Any]:
    """A replay shovel's definition: it moves what ``src_queue`` holds when it starts
    (``src-delete-after: queue-length``; then it removes itself, even if the process that
    created it died), each message acked only after its republish is confirmed
    (``ack-mode: on-confirm``: loss-free). ``dest``: ``dest-queue``, or ``dest-exchange``
    and ``dest-exchange-key`` (underscores for dashes)."""
    uri = "amqp:///" + q(vhost)
    return {"src-protocol": "amqp091", "src-uri": uri, "src-queue": src_queue,
            "src-prefetch-count": prefetch, "src-delete-after": "queue-length",
            "dest-protocol": "amqp091", "dest-uri": uri,
            **{k.replace("_", "-"): v for k, v in dest.items()}, "ack-mode": "on-confirm"}


@dataclass(frozen=True)
class Running:
    """A replay shovel that exists: what it moves from, and the queue it moves to (if it
    moves to a queue rather than through an exchange)."""

    src: str
    dest_queue: str


async def replay_shovels(mgmt: ManagementClient, vhost: str) -> dict[str, Running]:
    """Replay shovels that exist in ``vhost``, by name."""
    params = await mgmt.shovel_parameters(vhost)
    return {str(p.get("name")): Running(str((p.get("value") or {}).get("src-queue", "")),
                                        str((p.get("value") or {}).get("dest-queue", "")))
            for p in params if str(p.get("name", "")).startswith(REPLAY_SHOVEL_PREFIX)}


async def not_running(mgmt: ManagementClient, vhost: str, names: Iterable[str]) -> list[str]:
    """Of the replay shovels ``names`` (defined), those the broker does not run: no status
    on any node at two looks :data:`NOT_RUNNING_SECONDS` apart, and still defined.

    Seen when the process creating a shovel was killed while its PUT was being answered:
    the broker kept the definition (a runtime parameter) and started no shovel. Nothing
    removes such a definition (``src-delete-after`` is the shovel's own doing), so the DLQ
    it names would be refused as busy for ever. A shovel that starts, runs or restarts
    after a failure has a status all along (``starting``, ``running``, ``terminated``).
    The second look costs the wait only when a definition has no status at the first."""
    names = set(names)
    if not names:
        return []
    missing = names - await _with_status(mgmt, vhost)
    if not missing:
        return []
    await asyncio.sleep(NOT_RUNNING_SECONDS)
    missing -= await _with_status(mgmt, vhost)
    return sorted(missing & set(await replay_shovels(mgmt, vhost)))


async def _with_status(mgmt: ManagementClient, vhost: str) -> set[str]:
    return {str(s.get("name")) for s in await mgmt.shovel_status(vhost)}


async def wait_gone(connection: Connection, mgmt: ManagementClient, vhost: str, name: str,
                    queue: str, total: int, progress: ProgressFn | None, moved: Moved) -> None:
    """Until the shovel has moved its share and removed itself. Every look is bounded (the
    management client's timeout, :data:`~queuewatch.dlq.watch.OP_TIMEOUT`): a lost API or
    link raises :class:`LostSight`, a DLQ that does not shrink :class:`Stalled`.

    The DLQ's depth and consumers are read over AMQP every :data:`FAST_POLL_SECONDS` (a
    passive declare); the management API is asked whether the shovel still exists every
    :data:`POLL_SECONDS`, and at once when the DLQ lost a consumer (the shovel's, as it
    ends): the replay returns within about 0.05 s of the shovel's end rather than 0.25 s."""
    polls = 0
    last_depth, last_change = total, time.monotonic()
    acks: list[int] = []
    await _acks_went_on(mgmt, vhost, queue, acks)  # where the DLQ's count of acks starts
    consumers_seen = 0
    next_look = 0.0
    while True:
        try:
            left, consumers = await queue_counts(connection, queue)
        except QueuewatchError as exc:
            raise LostSight(f"lost the AMQP link ({exc})") from exc
        now = time.monotonic()
        if now >= next_look or consumers < consumers_seen:
            next_look = now + POLL_SECONDS
            polls += 1
            try:
                exists = await mgmt.shovel_exists(vhost, name)
                look = exists and polls % STATUS_EVERY == 0
                statuses = await mgmt.shovel_status(vhost) if look else []
            except QueuewatchError as exc:
                raise LostSight(f"lost the management API ({exc})") from exc
            if not exists:
                return
            for s in statuses:
                if s.get("name") == name and s.get("state") == "terminated":
                    raise BrokerError(f"the replay shovel stopped: {s.get('reason') or 'unknown'} "
                                      "(dead letters not moved stay in the DLQ)")
        consumers_seen = max(consumers_seen, consumers)
        moved.count = min(max(total - left, 0), total)
        if left < last_depth:
            last_depth, last_change = left, now
        elif now - last_change > STALL_SECONDS and await _acks_went_on(mgmt, vhost, queue, acks):
            last_change = now  # a filtered replay: held back dead letters keep the depth
        elif now - last_change > STALL_SECONDS:
            raise Stalled(f"the shovel moved nothing for {STALL_SECONDS:g}s (is the broker "
                          "blocking publishers: a memory or disk alarm?)")
        if progress is not None:
            progress(moved.count, total)
        await asyncio.sleep(FAST_POLL_SECONDS)


async def _acks_went_on(mgmt: ManagementClient, vhost: str, queue: str, seen: list[int]) -> bool:
    """Whether the DLQ's count of acks (management statistics) grew since the last call
    (``seen`` holds it). A filtered replay holding back a long run of dead letters moves
    them to the tail: the depth stays, the acks go on."""
    try:
        info = await mgmt.queue(vhost, queue) or {}
    except QueuewatchError:
        return False
    acks = int((info.get("message_stats") or {}).get("ack", 0) or 0)
    grew = bool(seen) and acks > seen[-1]
    seen[:] = [acks]
    return grew
