"""The worker: register handlers per queue, then consume until stopped.

    worker = Worker(settings, topology, concurrency=10)

    @worker.job("emails")
    async def send_email(job: Job) -> None: ...

    worker.run_sync()          # or: await worker.run()

The worker runs on one :class:`~queuewatch.broker.link.BrokerLink` (connection name
``queuewatch-worker <id>``, failover along ``settings.amqp_addresses``): the link reconnects,
and restores one :class:`~queuewatch.broker.consumer.Subscription` per queue (each on its
own channel) after a reconnect, a broker-sent cancel (queue deleted, its node down) or a
channel the broker closed (``consumer_timeout``). Heartbeats say, per queue, whether the
worker consumes it, since when it does not, and why. ``stop()`` (SIGTERM/SIGINT under
``run_sync``) stops consuming, lets in-flight jobs finish up to ``shutdown_timeout``, and
leaves the rest unacked so the broker requeues them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable, Sequence

from queuewatch import stopsignal
from queuewatch.aio import end_task
from queuewatch.broker.consumer import NO_LINK, Subscription
from queuewatch.broker.delivery import Delivery
from queuewatch.broker.errors import ANY_BROKER_ERROR
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.publish import ConfirmedPublisher
from queuewatch.broker.types import Channel as AbstractChannel
from queuewatch.broker.types import Connection as AbstractConnection
from queuewatch.config import Settings
from queuewatch.errors import ConfigError, QueuewatchError
from queuewatch.events.queuestate import QueueStates
from queuewatch.events.recorder import WORKER_GATHER, recorder_for
from queuewatch.idempotency import IdempotencyStore, SqliteStore
from queuewatch.producer.locks import Locks
from queuewatch.telemetry import ConsumerStatus, consumer_advice
from queuewatch.topology import QueueSpec, Topology
from queuewatch.webconfig import WebConfig
from queuewatch.worker.cancels import CancelList
from queuewatch.worker.decode import DEFAULT_MAX_PAYLOAD_BYTES
from queuewatch.worker.hooks import Observers, WorkerObserver
from queuewatch.worker.job import Handler
from queuewatch.worker.journal import Journal
from queuewatch.worker.limits import QueueLimiter
from queuewatch.worker.liveness import consumer_timeout_line, timeout_warnings
from queuewatch.worker.metrics import PrometheusObserver
from queuewatch.worker.pause import Pauses
from queuewatch.worker.process import Processor, Route
from queuewatch.worker.ratelimit import TokenBucket
from queuewatch.worker.telemetry import (
    HeartbeatSender,
    control_declarer,
    control_handler,
    control_queue_name,
)

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 10
#: Deliveries held per concurrency slot (prefetch = concurrency * this). Jobs waiting for the
#: idempotency store's group commit (about 2 ms) still hold their delivery, so the prefetch must
#: cover running + committing jobs: the sweep in BENCHMARKS.md measured 2,090 jobs/s at
#: prefetch 10 and 4,626/s at 100 for concurrency 10. Lower it (--prefetch) for long jobs shared
#: by many workers, where a deep prefetch hoards work in one process.
PREFETCH_PER_SLOT = 10
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
#: Seconds the prefetched deliveries get to end after the in-flight jobs at shutdown.
TASK_END_TIMEOUT = 5.0
#: Seconds the heartbeat waits for its channel to open (a busy loop or broker can be slow;
#: beats are skipped meanwhile).
HEARTBEAT_CHANNEL_WAIT = 5.0
#: Longest wait at shutdown for the job events still unconfirmed (seconds): what is left of
#: the grace, but at least EVENTS_FLUSH_MIN (a job that ended at the deadline has its
#: events confirmed in milliseconds on a live link).
EVENTS_FLUSH = 5.0
EVENTS_FLUSH_MIN = 1.0
#: What opening a channel on the link can raise (a broken link, or its last connect error).
_CHANNEL_ERRORS: tuple[type[BaseException], ...] = (QueuewatchError, *ANY_BROKER_ERROR)


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
    ) -> None:
        if concurrency < 1:
            raise ConfigError("concurrency must be >= 1")
        self.settings = settings
        self.topology = topology
        self.worker_id = worker_id or settings.worker_name or new_worker_id()
        self.connection_name = f"queuewatch-worker {self.worker_id}"
        self.concurrency = concurrency
        self.prefetch = prefetch or concurrency * PREFETCH_PER_SLOT
        self.shutdown_timeout = shutdown_timeout
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
        self.link = BrokerLink(settings, name=self.connection_name)
        """The worker's one connection (reconnects, restores consumers)."""
        self.publisher = ConfirmedPublisher(self.link)
        self.processor.publisher = self.publisher
        self.locks = Locks(self.link, self.publisher)
        self.processor.locks = self.locks
        self.stream_link = BrokerLink(settings, name=f"queuewatch-streams {self.worker_id}")
        """Job events, cancel tombstones and queue states: streams, on a connection of their
        own. RabbitMQ closes the whole connection when a stream cannot take a publish or a
        consumer (its coordinator without a majority: seen for minutes on a 2-node cluster
        after a node's kill -9); the job consumers must not go down with it."""
        self.recorder = recorder_for(self.stream_link, settings, gather=WORKER_GATHER)
        if self.recorder is not None:
            self.processor.journal = Journal(self.recorder, self.worker_id, settings.result_max_bytes)
            self.processor.cancels = CancelList(self.stream_link, settings)
        self.heartbeat = HeartbeatSender(
            self.processor, self.worker_id, [], concurrency, topology.telemetry_exchange,
            self.connection_name, heartbeat_interval, consumers=self.consumer_status,
        )
        self.subscriptions: dict[str, Subscription] = {}
        """One per job queue, once ``run`` started."""
        self.queue_states = QueueStates(self.stream_link, settings.control_exchange)
        """Paused queues and run-time rate limits (read at start, then live)."""
        self.pauses = Pauses(self.link, self.queue_states, self.processor.paused,
                             self.subscriptions, self.worker_id, running=self._busy_with)
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        """Set while every job queue's consumer is live (tests and the CLI wait on it)."""
        self._telemetry_channel: AbstractChannel | None = None
        self._link_up = False
        self._deadline: float | None = None
        """Loop time by which a stopping worker's jobs must end (set by the stop)."""

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
        bucket = TokenBucket(spec.rate_limit_per_process) if spec.rate_limit_per_process else None
        limiter = QueueLimiter(self.link, spec, self.queue_states, self.worker_id)
        self.routes[queue] = Route(spec, handler, bucket, limiter)
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

    @property
    def connections(self) -> int:
        """How many times the worker connected (1 + reconnects)."""
        return self.link.connects

    def _busy_with(self, queue: str) -> bool:
        """A job of ``queue`` runs, or any job is settling (its ack still to come)."""
        return bool(self.processor.active) or any(
            r.queue == queue for r in self.processor.running.values())

    def consumer_status(self) -> tuple[ConsumerStatus, ...]:
        """Per job queue: whether its consumer is live, since when it is not, and why."""
        out = []
        # Before the subscriptions are made (the start waits, bounded, for the cancelled
        # jobs and the paused queues): starting, or why not when the link cannot connect.
        down = not self.link.alive and self.link.last_error is not None
        for name in self.routes:
            sub = self.subscriptions.get(name)
            if sub is None:
                out.append(ConsumerStatus(name, False, self.heartbeat.started_at,
                                          "link_down" if down else "starting",
                                          NO_LINK if down else "not subscribed yet"))
                continue
            out.append(sub.state)
        return tuple(out)

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
            if stopsignal.take():  # asked to stop before it could listen
                self.stop()
        if self.metrics is not None:
            self.metrics.watch_blocked(lambda: self.link.blocked)
            if (recorder := self.recorder) is not None:
                self.metrics.watch_events(lambda: recorder.pending, lambda: recorder.held_out)
            if self.metrics_port is not None:
                self.metrics_port = self.metrics.serve(
                    self.metrics_port, web=WebConfig.load(self.settings.web_config))
        self.observer.on_worker_start(self.worker_id, list(self.routes))
        for line in timeout_warnings((r.spec for r in self.routes.values()),
                                     self.settings.broker_consumer_timeout, self.prefetch,
                                     self.concurrency):
            log.warning("worker %s: %s", self.worker_id, line)
        self.link.on_up(self._on_link_up)
        await self.stream_link.start()
        if self.processor.cancels is not None:
            # Tombstones first (bounded wait): a job cancelled while queued must not run.
            await self.processor.cancels.start()
        await self.link.start()
        await self.queue_states.reader.start()  # paused queues stay paused (bounded wait)
        for name, route in self.routes.items():
            self.subscriptions[name] = self.link.subscribe(
                name, self._callback(route), prefetch=self.prefetch,
                on_change=self._on_consumer_change, wrap=Delivery)
        await self.pauses.apply()
        for route in self.routes.values():
            if route.limiter is not None:
                route.limiter.start()  # a refiller candidate (idle while the queue has no limit)
        self.link.subscribe(
            control_queue_name(self.worker_id), control_handler(self.processor),
            declare=control_declarer(self.topology.control_exchange, self.worker_id))
        beat = asyncio.create_task(self.heartbeat.run(self._telemetry), name="heartbeat")
        try:
            await self.link.start()
            await self._stopping.wait()
            await self._shutdown()
        finally:
            await end_task(beat)
            for route in self.routes.values():
                if route.limiter is not None:
                    await route.limiter.close()
            await self._end_tasks(list(self.processor.tasks))
            # The two links close side by side: every step is bounded, but on a silent
            # link the bounds would add up past the grace.
            await asyncio.gather(self._close_job_link(), self._close_stream_link())
            self.connected.clear()
            if self.store is not None:
                await self.store.close()
            if self.metrics is not None:
                self.metrics.close()
            self.observer.on_worker_stop(self.worker_id)

    async def _close_job_link(self) -> None:
        # (nothing publishes any more: their channels may close with the connection)
        await asyncio.gather(self.locks.close(), self.publisher.close(), self.link.close())

    async def _close_stream_link(self) -> None:
        recorder = self.recorder
        if recorder is None:
            await self.stream_link.close()
            return
        # The last job events get what is left of the grace (at least EVENTS_FLUSH_MIN, at
        # most EVENTS_FLUSH); then the recorder's channel and the connection close side by
        # side (what is still unconfirmed is reported by close).
        loop = asyncio.get_running_loop()
        left = EVENTS_FLUSH if self._deadline is None else self._deadline - loop.time()
        flush_for = min(max(left, EVENTS_FLUSH_MIN), EVENTS_FLUSH)
        await recorder.flush(flush_for)
        await asyncio.gather(recorder.close(flush_for), self.stream_link.close())

    def _callback(self, route: Route) -> Callable[[Delivery], None]:
        spawn = self.processor.spawn

        def on_message(message: Delivery) -> None:
            spawn(message, route)
        return on_message

    async def _on_link_up(self, _conn: AbstractConnection) -> None:
        self._link_up = True
        self.observer.on_connected(self.worker_id)

    def _on_consumer_change(self, sub: Subscription) -> None:
        state = sub.state
        if all(s.live or s.state.cause == "paused" for s in self.subscriptions.values()) \
                and len(self.subscriptions) == len(self.routes):
            self.connected.set()
        else:
            self.connected.clear()
        if state.cause == "link_down" and self._link_up:
            self._link_up = False
            self.observer.on_disconnected(self.worker_id, "connection lost")
        if state.cause == "consumer_timeout":
            route = self.routes.get(state.queue)
            log.warning("worker %s: %s", self.worker_id, consumer_timeout_line(
                state, route.spec if route else None, list(self.processor.running.values()),
                self.settings.broker_consumer_timeout))
        elif not state.live and state.cause not in ("starting", "stopped", "link_down", "paused"):
            log.warning("worker %s: not consuming %r: %s; %s", self.worker_id, state.queue,
                        state.reason, consumer_advice(state.cause))
        self.observer.on_consumer_change(self.worker_id, state)

    async def _telemetry(self) -> AbstractChannel | None:
        """The heartbeat channel, opened again after a reconnect or a broker-side close."""
        channel = self._telemetry_channel
        if channel is not None and not channel.is_closed and self.link.alive:
            return channel
        self._telemetry_channel = None
        if not self.link.alive:
            return None
        try:
            channel = await self.link.channel(timeout=HEARTBEAT_CHANNEL_WAIT)
        except _CHANNEL_ERRORS as exc:
            log.debug("no heartbeat channel: %s", exc)
            return None
        self._telemetry_channel = channel
        return channel

    async def _shutdown(self) -> None:
        """Stop consuming, let in-flight jobs finish (up to the deadline); the caller closes.

        The grace counts from the stop: the consumers' cancels (each bounded, and slow only
        on a silent link) are sent all at once while the jobs run, not added to it."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline = loop.time() + self.shutdown_timeout
        self.processor.accepting = False
        # (cancel never raises, link up or down)
        await asyncio.gather(*(sub.cancel() for sub in self.subscriptions.values()))
        tasks = list(self.processor.active)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=max(deadline - loop.time(), 0.0))
            if pending:
                log.warning("%d job(s) still running at the shutdown deadline; they stay "
                            "unacked and the broker requeues them", len(pending))

    async def _end_tasks(self, tasks: list[asyncio.Task[object]]) -> None:
        """End every delivery's task (prefetched ones, and jobs past the deadline) and wait
        for them, so none is left pending when the loop closes."""
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=TASK_END_TIMEOUT)
            for task in pending:
                log.warning("a job ignored its cancellation at shutdown: %s", task.get_name())
