"""Helpers for the DLQ tests (no tests here): fabricate dead letters, drain queues.

The worker that parks jobs in ``Q.dlq`` is written elsewhere; these tests publish messages
carrying the same ``x-qw-*`` headers straight into the DLQ, as that worker would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection

from queuewatch import envelope as env
from queuewatch.topology import QueueSpec
from tests.helpers import declare


async def setup_jobs(connection: AbstractConnection, vhost: str, name: str = "jobs") -> QueueSpec:
    spec = QueueSpec(name, max_priority=0)
    await declare(connection, vhost, spec, delay_levels=1)
    return spec


def dead_headers(queue: str, *, error_type: str = "ValueError", reason: str = "failed",
                 replay_count: int = 0, attempt: int = 5, dead_at_ms: int | None = None,
                 ) -> dict[str, Any]:
    now = env.now_ms() if dead_at_ms is None else dead_at_ms
    headers: dict[str, Any] = {
        env.H_PUBLISHED_MS: now - 60_000, env.H_ATTEMPT: attempt,
        env.H_DEAD_REASON: reason, env.H_ERROR_TYPE: error_type,
        env.H_ERROR_MESSAGE: f"boom from {error_type}",
        env.H_TRACEBACK: "Traceback (most recent call last):\n  ...\nValueError: boom",
        env.H_FIRST_FAILED_MS: now - 30_000, env.H_LAST_FAILED_MS: now,
        env.H_ORIGINAL_EXCHANGE: "", env.H_ORIGINAL_ROUTING_KEY: queue,
        env.H_ORIGINAL_QUEUE: queue, env.H_DEAD_QUEUE: queue, env.H_DEAD_AT_MS: now,
        env.H_REPLAY_COUNT: replay_count,  # the worker writes it on every dead letter
    }
    return headers


async def publish_dead_letters(
    connection: AbstractConnection, queue: str, n: int, *,
    headers: Callable[[int], dict[str, Any]] | None = None,
    body: Callable[[int], bytes] | None = None,
    batch: int = 500,
) -> list[str]:
    """Publish ``n`` dead letters of job queue ``queue`` into ``queue.dlq`` (confirmed)."""
    ids = [f"job-{i:06d}-{env.new_job_id()[:8]}" for i in range(n)]
    channel = await connection.channel(publisher_confirms=True)
    try:
        for start in range(0, n, batch):
            futs = []
            for i in range(start, min(start + batch, n)):
                msg = aio_pika.Message(
                    body(i) if body else f'{{"n": {i}, "id": "{ids[i]}"}}'.encode(),
                    message_id=ids[i], content_type=env.JSON,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers=headers(i) if headers else dead_headers(queue),
                )
                futs.append(channel.default_exchange.publish(msg, routing_key=queue + ".dlq"))
            await asyncio.gather(*futs)
    finally:
        await channel.close()
    return ids


async def drain_ids(connection: AbstractConnection, queue: str, idle: float = 0.5) -> list[str]:
    """Consume (and ack) everything in ``queue``; message ids in delivery order."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)
    q = await channel.declare_queue(queue, passive=True)
    got: list[str] = []
    try:
        while True:
            message = await q.get(no_ack=True, fail=False, timeout=5)
            if message is None:
                await asyncio.sleep(idle)
                message = await q.get(no_ack=True, fail=False, timeout=5)
                if message is None:
                    return got
            got.append(str(message.message_id))
    finally:
        await channel.close()


async def snapshot(connection: AbstractConnection, queue: str) -> list[tuple[Any, bytes, Any]]:
    """(message_id, body, headers) of every message, in order, via the core's non-destructive
    read; used to prove that reads change nothing."""
    from queuewatch.dlq.peek import peek

    page = await peek(connection, queue, 0, 1_000_000)
    return [(d.message_id, d.body, dict(d.headers)) for d in page.items]
