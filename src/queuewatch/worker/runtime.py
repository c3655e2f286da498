"""The worker: register handlers per queue, then consume until stopped.

    worker = Worker(settings, topology, concurrency=10)

    @worker.job("emails")
    async def send_email(job: Job) -> None: ...

    worker.run_sync()          # or: await worker.run()

The worker reconnects after a connection loss and restores every consumer itself (it does
not rely on aio-pika's robust objects). ``stop()`` (SIGTERM/SIGINT under ``run_sync``)
stops consuming, lets in-flight jobs finish up to ``shutdown_timeout``, and leaves the rest
unacked so the broker requeues them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from queuewatch.broker.connect import connect
from queuewatch.config import Settings
from queuewatch.errors import BrokerUnavailable, ConfigError
from queuewatch.idempotency import IdempotencyStore, SqliteStore
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker.decode import DEFAULT_MAX_PAYLOAD_BYTES
from queuewatch.worker.hooks import Observers, WorkerObserver
from queuewatch.worker.job import Handler
from queuewatch.worker.metrics import PrometheusObserver
from queuewatch.worker.process import Processor, Route
from queuewatch.worker.ratelimit import TokenBucket
from queuewatch.worker.telemetry import HeartbeatSender, start_control

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 10
#: Deliveries held per concurrency slot (prefetch = concurrency * this). Jobs waiting for the
#: idempotency store's group commit (about 2 ms) still hold their delivery, so the prefetch must
#: cover running + committing jobs: the sweep in BENCHMARKS.md measured 2,090 jobs/s at
#: prefetch 10 and 4,626/s at 100 for concurrency 10. Lower it (--prefetch) for long jobs shared
#: by many workers, where a deep prefetch hoards work in one process.
PREFETCH_PER_SLOT = 10
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
_LINK_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, OSError, BrokerUnavailable,
                asyncio.TimeoutError)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Consumes job queues and runs their handlers. See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        *,
        worker_id: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        prefetch: int | None = None,
        idempotency: IdempotencyStore | bool = True,
        observers: Sequence[WorkerObserver] = (),
        metrics: bool = True,
        metrics_port: int | None = None,
        heartbeat_interval: float = 1.0,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        reconnect_delay: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ConfigError("concurrency must be >= 1")
        self.settings = settings
        self.topology = topology
        self.worker_id = worker_id or new_worker_id()
        self.connection_name = f"queuewatch-worker {self.worker_id}"
        self.concurrency = concurrency
        self.prefetch = prefetch or concurrency * PREFETCH_PER_SLOT
        self.shutdown_timeout = shutdown_timeout
        self.reconnect_delay = reconnect_delay
        self.metrics_port = metrics_port
        self.metrics = PrometheusObserver() if metrics else None
        all_obs = [*( [self.metrics] if self.metrics else []), *observers]
        self.observer: WorkerObserver = (
            all_obs[0] if len(all_obs) == 1 else Observers(all_obs) if all_obs else WorkerObserver()
        )
        if idempotency is True:
            store: IdempotencyStore | None = SqliteStore.default(settings)
        elif idempotency is False:
            store = None
        else:
            store = idempotency
        self.store = store
        self.routes: dict[str, Route] = {}
        self.processor = Processor(
            worker_id=self.worker_id, delay_levels=topology.delay_levels,
            semaphore=asyncio.Semaphore(concurrency), observer=self.observer, store=store,
            max_payload_bytes=max_payload_bytes,
        )
        self.heartbeat = HeartbeatSender(
            self.processor, self.worker_id, [], concurrency, topology.telemetry_exchange,
            self.connection_name, heartbeat_interval,
        )
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        """Set while every consumer is up (tests and the CLI wait on it)."""
        self.connections = 0
        """How many times the worker connected (1 + reconnects)."""
        self._conn: AbstractConnection | None = None
        self._telemetry_channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []

    # -- registration -----------------------------------------------------------------
    def job(self, queue: str) -> Callable[[Handler], Handler]:
        """Decorator: ``@worker.job("emails")`` registers an ``async def handler(job)``."""
        def register(handler: Handler) -> Handler:
            self.add_handler(queue, handler)
            return handler
        return register

    def add_handler(self, queue: str, handler: Handler) -> None:
        try:
            spec = self.topology.queue(queue)
        except KeyError:
            spec = QueueSpec(queue)
        bucket = TokenBucket(spec.rate_limit) if spec.rate_limit else None
        self.routes[queue] = Route(spec, handler, bucket)
        self.heartbeat.queues = tuple(self.routes)

    def set_concurrency(self, concurrency: int) -> None:
        """Change how many jobs run at once (before ``run``); prefetch follows unless set."""
        if concurrency < 1:
            raise ConfigError("concurrency must be >= 1")
        if self.prefetch == self.concurrency * PREFETCH_PER_SLOT:
            self.prefetch = concurrency * PREFETCH_PER_SLOT
        self.concurrency = self.heartbeat.concurrency = concurrency
        self.processor.semaphore = asyncio.Semaphore(concurrency)

    @property
    def in_flight(self) -> int:
        return len(self.processor.running)

    # -- running ----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the worker to shut down gracefully (safe to call from a signal handler)."""
        self._stopping.set()

    def run_sync(self) -> None:
        """Run until SIGTERM/SIGINT, then shut down gracefully."""
        asyncio.run(self.run(handle_signals=True))

    async def run(self, *, handle_signals: bool = False) -> None:
        if not self.routes:
            raise ConfigError("no handlers registered: use @worker.job('queue') first")
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        if self.metrics is not None:
            self.metrics.watch_blocked(self._blocked)
            if self.metrics_port is not None:
                self.metrics_port = self.metrics.serve(self.metrics_port)
        self.observer.on_worker_start(self.worker_id, list(self.routes))
        beat = asyncio.create_task(self.heartbeat.run(lambda: self._telemetry_channel))
        try:
            await self._connect_loop()
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            if self.store is not None:
                await self.store.close()
            if self.metrics is not None:
                self.metrics.close()
            self.observer.on_worker_stop(self.worker_id)

    async def _connect_loop(self) -> None:
        while not self._stopping.is_set():
            lost = asyncio.Event()
            try:
                conn = await connect(
                    self.settings, client_properties={"connection_name": self.connection_name}
                )
                self._conn = conn
                conn.close_callbacks.add(lambda *_, ev=lost: ev.set())
                await self._setup(conn)
            except _LINK_ERRORS as exc:
                log.warning("worker %s cannot connect: %s; retrying", self.worker_id, exc)
                await self._drop_connection()
                await _wait_any(self._stopping, timeout=self.reconnect_delay)
                continue
            self.connections += 1
            self.connected.set()
            self.observer.on_connected(self.worker_id)
            await _wait_any(self._stopping, lost)
            self.connected.clear()
            if self._stopping.is_set():
                await self._shutdown()
                return
            self.observer.on_disconnected(self.worker_id, "connection lost")
            log.warning("worker %s lost its connection; reconnecting", self.worker_id)
            await self._drop_connection()
            await _wait_any(self._stopping, timeout=self.reconnect_delay)

    async def _setup(self, conn: AbstractConnection) -> None:
        async def open_confirm_channel() -> AbstractChannel:
            return await conn.channel(publisher_confirms=True)

        self.processor.open_channel = open_confirm_channel
        self.processor.publish_channel = await open_confirm_channel()
        self._telemetry_channel = await conn.channel(publisher_confirms=False)
        await start_control(self._telemetry_channel, self.topology.control_exchange,
                            self.worker_id, self.processor)
        consume = await conn.channel(publisher_confirms=False)
        await consume.set_qos(prefetch_count=self.prefetch)
        self._consumers = []
        for name, route in self.routes.items():
            queue = await consume.get_queue(name, ensure=True)
            tag = await queue.consume(self._callback(route))
            self._consumers.append((queue, tag))

    def _callback(self, route: Route) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        handle = self.processor.handle

        async def on_message(message: AbstractIncomingMessage) -> None:
            await handle(message, route)
        return on_message

    async def _shutdown(self) -> None:
        """Stop consuming, let in-flight jobs finish (up to the deadline), then close."""
        self.processor.accepting = False
        for queue, tag in self._consumers:
            try:
                await queue.cancel(tag)
            except _LINK_ERRORS as exc:
                log.debug("cancel consumer %s: %s", tag, exc)
        tasks = list(self.processor.active)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout)
            if pending:
                log.warning("%d job(s) still running at the shutdown deadline; they stay "
                            "unacked and the broker requeues them", len(pending))
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._telemetry_channel = None
        self.processor.publish_channel = None
        self.processor.open_channel = None
        if conn is not None and not conn.is_closed:
            try:
                await conn.close()
            except _LINK_ERRORS as exc:
                log.debug("closing the connection: %s", exc)

    def _blocked(self) -> bool:
        from queuewatch.broker.link import is_blocked as _is_blocked

        return _is_blocked(self._conn)


async def _wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
