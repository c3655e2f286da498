"""Helpers for link-fault tests of the monitor's faces: settings through loopback proxies,
and a real, busy worker on a direct connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from queuewatch.config import Settings
from queuewatch.producer import AsyncProducer
from queuewatch.topology import Topology
from queuewatch.worker import Job, Worker
from tests.helpers import wait_until
from tests.proxy import TcpProxy


@dataclass
class Proxied:
    """Settings whose AMQP and management addresses go through two proxies."""

    settings: Settings
    amqp: TcpProxy
    http: TcpProxy

    def cut(self) -> None:
        self.amqp.cut()
        self.http.cut()

    def restore(self) -> None:
        self.amqp.restore()
        self.http.restore()


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth + '@' if auth else ''}127.0.0.1:{port}"))


@contextmanager
def proxied(settings: Settings, **changes: object) -> Iterator[Proxied]:
    """``settings`` pointed at a proxy in front of 5672 and one in front of 15672 (the ports of
    ``settings``), with ``changes`` applied (a short ``heartbeat``, thresholds...)."""
    amqp_at, http_at = urlsplit(settings.amqp_url), urlsplit(settings.management_url)
    amqp = TcpProxy(("127.0.0.1", amqp_at.port or 5672))
    http = TcpProxy(("127.0.0.1", http_at.port or 15672))
    try:
        s = replace(settings, amqp_url=_via(settings.amqp_url, amqp.port), amqp_urls=(),
                    management_url=_via(settings.management_url, http.port), management_urls=(),
                    **changes)  # type: ignore[arg-type]
        yield Proxied(s, amqp, http)
    finally:
        amqp.close()
        http.close()


@dataclass
class Busy:
    worker: Worker
    done: int = 0
    published: int = 0


@asynccontextmanager
async def busy_worker(settings: Settings, topology: Topology, queue: str, worker_id: str, *,
                      job_seconds: float = 0.2, per_second: float = 20.0) -> AsyncIterator[Busy]:
    """A real worker (direct connection, concurrency 4) doing ``per_second`` jobs of
    ``job_seconds`` each, fed by a producer on its own direct connection."""
    worker = Worker(settings, topology, worker_id=worker_id, concurrency=4, idempotency=False,
                    metrics=False)
    busy = Busy(worker)

    @worker.job(queue)
    async def handle(job: Job) -> None:
        await asyncio.sleep(job_seconds)
        busy.done += 1

    stop = asyncio.Event()

    async def feed() -> None:
        async with AsyncProducer(settings, topology) as producer:
            while not stop.is_set():
                await producer.publish(queue, {"n": busy.published})
                busy.published += 1
                await asyncio.sleep(1 / per_second)

    run = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.connected.is_set() or run.done(), timeout=15, what="worker up")
    if run.done():
        run.result()
    producing = asyncio.create_task(feed())
    try:
        yield busy
    finally:
        stop.set()
        await asyncio.wait_for(producing, 15)
        worker.stop()
        await asyncio.wait_for(run, 30)


class Stopwatch:
    """Seconds since start (for 'how long until the truth is back')."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started
