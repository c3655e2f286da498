"""Helpers for console tests on the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aio_pika
from textual.pilot import Pilot

from queuewatch import envelope as env
from queuewatch.config import Settings
from queuewatch.tui import make_app
from queuewatch.tui.app import QueuewatchApp
from queuewatch.tui.live import LiveSource


def live_app(settings: Settings, source: LiveSource | None = None) -> QueuewatchApp:
    return make_app(settings, source or LiveSource(settings), poll_interval=0.5)


async def wait_for(
    pilot: Pilot, predicate: Callable[[], object], timeout: float = 40.0, what: str = "condition"  # type: ignore[type-arg]
) -> None:
    """Let the app run until ``predicate()`` is truthy; fail with ``what`` after ``timeout``
    (40 s: on a loaded 2-core machine the first DLQ read took up to 8 s)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.1)


async def park_dead_letters(connection, queue: str, job_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Put dead letters into ``queue.dlq`` the way a queuewatch worker parks failed jobs."""
    channel = await connection.channel(publisher_confirms=True)
    now = env.now_ms()
    for i, job_id in enumerate(job_ids):
        headers = {
            env.H_ATTEMPT: 3, env.H_DEAD_REASON: "failed",
            env.H_ERROR_TYPE: "ValueError", env.H_ERROR_MESSAGE: f"bad input {i}",
            env.H_TRACEBACK: f"Traceback (most recent call last):\nValueError: bad input {i}",
            env.H_ORIGINAL_EXCHANGE: "", env.H_ORIGINAL_ROUTING_KEY: queue,
            env.H_ORIGINAL_QUEUE: queue, env.H_DEAD_AT_MS: now,
        }
        await channel.default_exchange.publish(
            aio_pika.Message(
                body=f'{{"n": {i}}}'.encode(), message_id=job_id, headers=headers,
                content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=f"{queue}.dlq", mandatory=True,
        )
    await channel.close()
    await asyncio.sleep(0)


#: Five dead letters of two causes: ``ValueError: bad input <n>`` (3), ``KeyError: <str>`` (2).
CAUSES = [("j1", "ValueError", "bad input 1"), ("j2", "KeyError", "'customer 7'"),
          ("j3", "ValueError", "bad input 22"), ("j4", "KeyError", "'customer 9'"),
          ("j5", "ValueError", "bad input 3")]


async def park_causes(connection, queue: str, items: list[tuple[str, str, str]]) -> None:  # type: ignore[no-untyped-def]
    """Dead letters ``(job id, error type, error message)`` in ``queue.dlq``."""
    channel = await connection.channel(publisher_confirms=True)
    for job_id, error_type, message in items:
        headers = {env.H_DEAD_REASON: "failed", env.H_ERROR_TYPE: error_type,
                   env.H_ERROR_MESSAGE: message, env.H_ORIGINAL_EXCHANGE: "",
                   env.H_ORIGINAL_ROUTING_KEY: queue, env.H_ORIGINAL_QUEUE: queue,
                   env.H_DEAD_AT_MS: env.now_ms()}
        await channel.default_exchange.publish(
            aio_pika.Message(body=f'{{"job": "{job_id}"}}'.encode(), message_id=job_id,
                             headers=headers), routing_key=f"{queue}.dlq", mandatory=True)
    await channel.close()


async def no_consumers(connection, queue: str) -> bool:  # type: ignore[no-untyped-def]
    """True once the broker lists no consumer on ``queue`` (a read of ours a moment ago may
    still be listed on a loaded machine: the DLQ core's guard would refuse the next one)."""
    channel = await connection.channel()
    try:
        q = await channel.declare_queue(queue, passive=True)
        return int(q.declaration_result.consumer_count or 0) == 0
    finally:
        await channel.close()
