"""Helpers for the DLQ tests (no tests here): fabricate dead letters, drain queues.

The worker that parks jobs in ``Q.dlq`` is written elsewhere; these tests publish messages
carrying the same ``x-qw-*`` headers straight into the DLQ, as that worker would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractConnection

from queuewatch import envelope as env
from queuewatch.config import Settings
from queuewatch.topology import QueueSpec
from tests.helpers import declare


async def setup_jobs(connection: AbstractConnection, vhost: str, name: str = "jobs") -> QueueSpec:
    spec = QueueSpec(name, max_priority=0)
    await declare(connection, vhost, spec, delay_levels=1)
    return spec


def dead_headers(queue: str, *, error_type: str = "ValueError", reason: str = "failed",
                 replay_count: int = 0, attempt: int = 5, dead_at_ms: int | None = None,
                 plain: bool = True) -> dict[str, Any]:
    """``plain=False``: as parked before the worker wrote the plain death headers."""
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
    if plain:
        headers.update(env.plain_death_headers(reason, error_type))
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
    return [str(m.message_id) for m in await drain(connection, queue, idle)]


async def drain(connection: AbstractConnection, queue: str, idle: float = 0.5) -> list[Any]:
    """Take (and ack) everything in ``queue``, in delivery order; what comes within ``idle``
    seconds of the queue looking empty too (a closed channel's gives back may be on the way)."""
    channel = await connection.channel()
    q = await channel.declare_queue(queue, passive=True)
    got: list[Any] = []
    try:
        while True:
            message = await q.get(no_ack=True, fail=False, timeout=5)
            if message is None:
                await asyncio.sleep(idle)
                message = await q.get(no_ack=True, fail=False, timeout=5)
                if message is None:
                    return got
            got.append(message)
    finally:
        await channel.close()


async def snapshot(connection: AbstractConnection, queue: str) -> list[tuple[Any, bytes, Any]]:
    """(message_id, body, headers) of every message, in order, via the core's non-destructive
    read; used to prove that reads change nothing."""
    from queuewatch.dlq.peek import peek

    page = await peek(connection, queue, 0, 1_000_000)
    return [(d.message_id, d.body, dict(d.headers)) for d in page.items]


# -- link faults and queue kinds (test_dlq_kinds, test_dlq_link_faults) ------------------------
QUEUEWATCH = str(Path(sys.executable).with_name("queuewatch"))


def cli_env(settings: Settings, amqp_url: str | None = None) -> dict[str, str]:
    """The environment of a ``queuewatch`` subprocess for ``settings`` (AMQP through
    ``amqp_url`` when given, e.g. a proxy)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    env.update(QUEUEWATCH_AMQP_URL=amqp_url or settings.amqp_url,
               QUEUEWATCH_MANAGEMENT_URL=settings.management_url,
               QUEUEWATCH_STATE_DIR=str(settings.state_dir))
    return env


async def dlq_cli(settings: Settings, *args: str, amqp_url: str | None = None,
                  timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``queuewatch dlq ARGS --vhost V`` to its end (without blocking the event loop:
    the test's own connections keep their heartbeats)."""
    proc = await start_dlq_cli(settings, *args, amqp_url=amqp_url)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return subprocess.CompletedProcess(
        [QUEUEWATCH, "dlq", *args], proc.returncode if proc.returncode is not None else -1,
        out.decode(), err.decode())


async def start_dlq_cli(settings: Settings, *args: str,
                        amqp_url: str | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        QUEUEWATCH, "dlq", *args, "--vhost", settings.effective_vhost,
        env=cli_env(settings, amqp_url), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)


def through(settings: Settings, port: int) -> Settings:
    """``settings`` with AMQP going to 127.0.0.1:``port`` (a TcpProxy), same credentials."""
    parts = urlsplit(settings.amqp_url)
    netloc = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    url = urlunsplit((parts.scheme, f"{netloc}127.0.0.1:{port}", parts.path, parts.query, ""))
    return replace(settings, amqp_url=url, amqp_urls=())


async def publish_many_dead_letters(connection: AbstractConnection, queue: str, n: int,
                                    window: int = 2000) -> list[str]:
    """``n`` dead letters of job queue ``queue`` into ``queue.dlq``, confirmed: the same
    as :func:`publish_dead_letters` for 10,000s, on aiormq directly (several times faster)."""
    from pamqp.commands import Basic

    ids = [f"job-{i:06d}-{env.new_job_id()[:8]}" for i in range(n)]
    headers = dead_headers(queue)
    channel = await connection.channel(publisher_confirms=True)
    raw = await channel.get_underlay_channel()
    try:
        for start in range(0, n, window):
            await asyncio.gather(*[raw.basic_publish(
                f'{{"n": {i}, "id": "{ids[i]}"}}'.encode(), exchange="",
                routing_key=queue + ".dlq", properties=Basic.Properties(
                    message_id=ids[i], content_type=env.JSON, delivery_mode=2, headers=headers),
                wait=False) for i in range(start, min(start + window, n))])
    finally:
        await channel.close()
    return ids


async def take_all_ids(connection: AbstractConnection, queue: str, idle: float = 0.5) -> list[str]:
    """Consume (no ack) everything in ``queue`` until it is empty and quiet; message ids in
    delivery order. On aiormq directly: much faster than basic.get for 10,000s."""
    channel = await connection.channel()
    raw = await channel.get_underlay_channel()
    got: list[str] = []
    loop = asyncio.get_running_loop()
    last = loop.time()

    async def on_message(message: Any) -> None:
        nonlocal last
        got.append(str(message.header.properties.message_id))
        last = loop.time()

    try:
        await raw.basic_consume(queue, on_message, no_ack=True)
        while True:
            await asyncio.sleep(idle / 2)
            if loop.time() - last > idle and \
                    (await raw.queue_declare(queue, passive=True)).message_count == 0:
                return got
    finally:
        await channel.close()
