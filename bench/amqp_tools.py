"""AMQP helpers for the harness: fast confirmed preloading and exact queue depth polling."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from bench.cpu import CpuWindow
from bench.procs import log_tail
from queuewatch import envelope
from queuewatch.config import Settings

PRELOAD_WINDOW = 1000
POLL_INTERVAL = 0.02


async def connect(settings: Settings) -> AbstractConnection:
    return await aio_pika.connect(settings.amqp_url_for(), timeout=10)


async def declare_queue(settings: Settings, name: str, arguments: dict[str, Any] | None = None,
                        durable: bool = True) -> None:
    conn = await connect(settings)
    try:
        ch = await conn.channel()
        await ch.declare_queue(name, durable=durable, arguments=arguments or None)
    finally:
        await conn.close()


async def redeclare_quorum(settings: Settings, name: str) -> None:
    """Delete queue ``name`` and declare it again, empty, as a quorum queue."""
    conn = await connect(settings)
    try:
        await (await conn.channel()).queue_delete(name)
    finally:
        await conn.close()
    await declare_queue(settings, name, {"x-queue-type": "quorum"})


def qw_message(i: int, payload: Any = None, priority: int | None = None) -> aio_pika.Message:
    """A job in queuewatch's envelope (what its producers publish), persistent."""
    job_id = envelope.new_job_id()
    body = json.dumps({"n": i} if payload is None else payload).encode()
    return aio_pika.Message(
        body, message_id=job_id, timestamp=time.time(), content_type=envelope.JSON,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=envelope.job_headers(job_id=job_id),
        priority=priority,
    )


async def preload(
    settings: Settings, routing_key: str, count: int,
    make: Callable[[int], aio_pika.Message], exchange: str = "",
) -> float:
    """Publish ``count`` messages with confirms (a window of :data:`PRELOAD_WINDOW`).

    Returns the publish rate (messages/s) for whoever wants it.
    """
    conn = await connect(settings)
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = ch.default_exchange if not exchange else await ch.get_exchange(exchange)
        start = time.perf_counter()
        pending: list[Any] = []
        for i in range(count):
            pending.append(ex.publish(make(i), routing_key))
            if len(pending) >= PRELOAD_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        if pending:
            await asyncio.gather(*pending)
        return count / (time.perf_counter() - start)
    finally:
        await conn.close()


class DepthProbe:
    """Exact ready-message and consumer counts by passive declare (not the 5 s-old stats)."""

    def __init__(self, conn: AbstractConnection, channel: AbstractChannel) -> None:
        self.conn = conn
        self.channel = channel

    @classmethod
    async def open(cls, settings: Settings) -> DepthProbe:
        conn = await connect(settings)
        return cls(conn, await conn.channel())

    async def counts(self, queue: str) -> tuple[int, int]:
        raw = await self.channel.get_underlay_channel()
        ok = await raw.queue_declare(queue, passive=True)
        return int(ok.message_count or 0), int(ok.consumer_count or 0)

    async def close(self) -> None:
        await self.conn.close()


async def wait_depth(settings: Settings, queue: str, want: int, timeout: float = 120.0) -> None:
    """Wait until ``queue`` holds exactly ``want`` ready messages."""
    probe = await DepthProbe.open(settings)
    try:
        deadline = time.monotonic() + timeout
        while (await probe.counts(queue))[0] != want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue} never reached depth {want}")
            await asyncio.sleep(POLL_INTERVAL)
    finally:
        await probe.close()


async def time_drain(
    settings: Settings, queue: str, total: int, proc: subprocess.Popen[bytes] | None = None,
    timeout: float = 600.0, start_timeout: float = 60.0, cpu: CpuWindow | None = None,
) -> float:
    """Seconds from the first consumer (or first message gone) until ``queue`` has no ready
    message left. ``proc`` is the worker doing it: its death aborts the measurement.
    ``cpu`` gets that window's CPU use."""
    probe = await DepthProbe.open(settings)
    try:
        t0: float | None = None
        last_idle = time.perf_counter()
        begin = time.monotonic()
        while True:
            ready, consumers = await probe.counts(queue)
            now = time.perf_counter()
            if t0 is None:
                if consumers > 0 or ready < total:
                    # started between the previous poll and this one: take the earlier time
                    # (errs by at most one poll interval, on the slow side)
                    t0 = last_idle
                    if cpu is not None:
                        cpu.begin()
                else:
                    last_idle = now
            if t0 is not None and ready == 0:
                if cpu is not None:
                    cpu.end()
                return now - t0
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {proc.returncode} ({ready} left):\n{log_tail(proc)}"
                )
            waited = time.monotonic() - begin
            if t0 is None and waited > start_timeout:
                raise TimeoutError(f"no consumer on {queue} after {start_timeout:.0f}s:\n"
                                   + (log_tail(proc) if proc else ""))
            if waited > timeout:
                raise TimeoutError(f"{queue} still had {ready} ready after {timeout:.0f}s")
            await asyncio.sleep(POLL_INTERVAL)
    finally:
        await probe.close()


async def wait_consumers(settings: Settings, queue: str, want: int = 1, timeout: float = 60.0,
                         proc: subprocess.Popen[bytes] | None = None) -> None:
    probe = await DepthProbe.open(settings)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, consumers = await probe.counts(queue)
            except Exception:  # queue not declared yet by the worker: reopen and retry
                await probe.close()
                probe = await DepthProbe.open(settings)
                consumers = 0
            if consumers >= want:
                return
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{log_tail(proc)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no consumer on {queue} after {timeout:.0f}s")
            await asyncio.sleep(0.05)
    finally:
        await probe.close()
