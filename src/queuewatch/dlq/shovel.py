"""Bulk replay through RabbitMQ's own shovel: as fast as the broker can move messages.

``DeadLetterQueue.replay(via_shovel=True)`` / ``queuewatch dlq replay --via-shovel``. The
shovel runs inside the broker with ``ack-mode: on-confirm`` (a dead letter is acked only
after its republish is confirmed: loss-free) and ``src-delete-after: queue-length`` (it
moves the messages present when it starts, then removes itself, even if the process that
created it dies).

The trade-off, and why the client path stays the default: a shovel moves messages **as
they are**. It cannot filter, rate-limit, refuse a poison message, reset the attempt
header or bump the replay counter per message, and it needs one destination for all. So
this path is only taken when it fits, checked on a sample of the head of the DLQ:

* no filter, no rate, no limit;
* every sampled dead letter (the first 100) goes back through the default exchange to one existing queue;
* no sampled dead letter is at the replay limit (unless forced).

The shovel adds ``x-shovelled`` (forward headers), which queuewatch counts as a replay, so
the poison-loop guard still sees shovelled replays. Attempts are NOT reset: a replayed job
gets only the attempts it had left (often a single one).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aio_pika.abc import AbstractConnection

from queuewatch.config import Settings
from queuewatch.dlq.channel import queue_depth
from queuewatch.dlq.model import REPLAY_SHOVEL_PREFIX
from queuewatch.dlq.peek import ProgressFn, peek
from queuewatch.dlq.replay import ReplayOptions, ReplayResult
from queuewatch.errors import QueuewatchError
from queuewatch.management import ManagementClient, q

SAMPLE = 100
POLL_SECONDS = 0.02


class ShovelNotApplicable(QueuewatchError):
    """The DLQ cannot be replayed by a shovel (use the default, per-message replay)."""


async def check_applicable(
    connection: AbstractConnection, queue: str, opts: ReplayOptions
) -> tuple[str, int]:
    """(destination queue, DLQ depth), or :class:`ShovelNotApplicable` saying why not."""
    if not opts.flt.is_empty or opts.rate or opts.limit is not None or opts.dry_run:
        raise ShovelNotApplicable("a shovel replays everything as is: no filter, rate, "
                                  "limit or dry run (drop --via-shovel)")
    page = await peek(connection, queue, 0, SAMPLE)
    if page.total == 0:
        return "", 0
    routes = {d.death.route for d in page.items}
    if len(routes) != 1 or None in routes:
        raise ShovelNotApplicable(f"the head of {queue!r} goes back to {len(routes)} different "
                                  "routes (or none); a shovel has one destination")
    route = routes.pop()
    assert route is not None
    if route.exchange != "":
        raise ShovelNotApplicable(f"dead letters go back through exchange {route.exchange!r}: "
                                  "a shovel cannot report unroutable messages (use the default)")
    poison = [d.job_id for d in page.items if d.replay_count >= opts.max_replays]
    if poison and not opts.force:
        raise ShovelNotApplicable(f"{len(poison)} dead letters at the head were already "
                                  f"replayed {opts.max_replays} times (e.g. {poison[0]})")
    await queue_depth(connection, route.routing_key)  # NotFound if the queue is gone
    return route.routing_key, page.total


async def replay_via_shovel(
    connection: AbstractConnection, mgmt: ManagementClient, settings: Settings, queue: str,
    opts: ReplayOptions, progress: ProgressFn | None = None,
) -> ReplayResult:
    start = time.monotonic()
    dest, total = await check_applicable(connection, queue, opts)
    if total == 0:
        return ReplayResult(queue, False, 0, 0, 0)
    vhost = settings.effective_vhost
    name = REPLAY_SHOVEL_PREFIX + uuid.uuid4().hex[:12]
    uri = "amqp:///" + q(vhost)
    value: dict[str, Any] = {
        "src-protocol": "amqp091", "src-uri": uri, "src-queue": queue,
        "dest-protocol": "amqp091", "dest-uri": uri, "dest-queue": dest,
        "ack-mode": "on-confirm", "src-delete-after": "queue-length",
        "add-forward-headers": True, "src-prefetch-count": 1000,
    }
    path = f"/parameters/shovel/{q(vhost)}/{q(name)}"
    await mgmt.put_shovel(vhost, name, value)
    try:
        while await mgmt.request("GET", path, missing_ok=True) is not None:
            if progress is not None:
                progress(max(total - await queue_depth(connection, queue), 0), total)
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await mgmt.delete_shovel(vhost, name)
    left = await queue_depth(connection, queue)
    moved = max(total - left, 0)
    if progress is not None:
        progress(moved, total)
    return ReplayResult(queue, False, total, total, moved, (), time.monotonic() - start)
