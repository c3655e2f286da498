"""Prometheus metrics for a worker process: one observer, its own registry, an HTTP endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from queuewatch.webconfig import WebConfig, serve_wsgi
from queuewatch.worker.hooks import DUPLICATE, RETRIED, WorkerObserver
from queuewatch.worker.job import Job

if TYPE_CHECKING:
    from queuewatch.telemetry import ConsumerStatus

DEFAULT_METRICS_HOST = "127.0.0.1"


class PrometheusObserver(WorkerObserver):
    """``queuewatch_jobs_total{queue,outcome}``, durations, in-progress, retries, nacks, blocked."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Counter("queuewatch_jobs", "Jobs finished, by outcome",
                            ["queue", "outcome"], registry=r)
        self.duration = Histogram("queuewatch_job_duration_seconds", "Handler run time",
                                  ["queue"], registry=r)
        self.in_progress = Gauge("queuewatch_jobs_in_progress", "Jobs running now",
                                 ["queue"], registry=r)
        self.retries = Counter("queuewatch_job_retries", "Jobs re-published for a retry",
                               ["queue"], registry=r)
        self.nacks = Counter("queuewatch_publish_nacks", "Publishes the broker refused",
                             ["queue"], registry=r)
        self.blocked = Gauge("queuewatch_producer_blocked",
                             "1 while the broker blocks this process's publishing", registry=r)
        self.consuming = Gauge("queuewatch_consumer_live", "1 while the worker's consumer "
                               "of the queue is live, 0 while it is not (see the log for why)",
                               ["queue"], registry=r)
        self.consumer_stops = Counter("queuewatch_consumer_stops", "Times the worker's "
                                      "consumer of the queue stopped, by cause (consumer_timeout: "
                                      "a delivery was not acked within the broker's "
                                      "consumer_timeout)", ["queue", "cause"], registry=r)
        self.server: Any = None
        self._per_queue: dict[str, tuple[Any, Any, Any, dict[str, Any]]] = {}

    def _children(self, queue: str) -> tuple[Any, Any, Any, dict[str, Any]]:
        """Labelled children per queue, looked up once (``labels()`` costs on the hot path)."""
        got = self._per_queue.get(queue)
        if got is None:
            got = (self.in_progress.labels(queue), self.duration.labels(queue),
                   self.retries.labels(queue), {})
            self._per_queue[queue] = got
        return got

    def _outcome(self, queue: str, outcome: str) -> Any:
        by_outcome = self._children(queue)[3]
        child = by_outcome.get(outcome)
        if child is None:
            child = by_outcome[outcome] = self.jobs.labels(queue, outcome)
        return child

    def watch_blocked(self, is_blocked: Callable[[], bool]) -> None:
        """Read the blocked state at scrape time (aio-pika has no blocked callback)."""
        self.blocked.set_function(lambda: 1.0 if is_blocked() else 0.0)

    def watch_events(self, pending: Callable[[], int], held_out: Callable[[], int]) -> None:
        """Job events waiting for the stream's confirm, and those jobs went on without
        (``events_hold``), read at scrape time."""
        Gauge("queuewatch_events_pending", "Job events not yet confirmed by the events "
              "stream", registry=self.registry).set_function(lambda: float(pending()))
        Gauge("queuewatch_events_held_out", "Job events whose job went on after events_hold "
              "without their confirm (sent when the stream answers; total since start)",
              registry=self.registry).set_function(lambda: float(held_out()))

    def serve(self, port: int, host: str = DEFAULT_METRICS_HOST, web: WebConfig | None = None) -> int:
        """Start the HTTP endpoint (port 0 = any free port) with ``web``'s TLS and basic
        auth; returns the port."""
        self.server = serve_wsgi(make_wsgi_app(self.registry), port, host, web)
        return int(self.server.server_port)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def on_publish_nack(self, queue: str) -> None:
        self.nacks.labels(queue).inc()

    def on_blocked(self, blocked: bool) -> None:
        self.blocked.set(1 if blocked else 0)

    def on_job_start(self, job: Job) -> None:
        self._children(job.queue)[0].inc()

    def on_job_end(self, job: Job, outcome: str, duration: float, error: BaseException | None) -> None:
        in_progress, hist, retries, _ = self._children(job.queue)
        in_progress.dec()
        self._outcome(job.queue, outcome).inc()
        hist.observe(duration)
        if outcome == RETRIED:
            retries.inc()

    def on_duplicate(self, queue: str, job_id: str) -> None:
        self._outcome(queue, DUPLICATE).inc()

    def on_consumer_change(self, worker_id: str, state: ConsumerStatus) -> None:
        self.consuming.labels(state.queue).set(1.0 if state.live else 0.0)
        if not state.live and state.cause not in (None, "starting", "stopped"):
            self.consumer_stops.labels(state.queue, state.cause).inc()
