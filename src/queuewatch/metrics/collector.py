"""The Prometheus collector: metric families built from one Snapshot.

It sits in its own ``CollectorRegistry`` (see :mod:`queuewatch.metrics.server`). Where a
snapshot comes from is passed in (``source``): the exporter's background poll
(:mod:`queuewatch.metrics.poller`), so a scrape never polls. The families of one snapshot
are built once and served to every scrape until the next snapshot. When the source fails
the scrape still answers: ``queuewatch_up 0`` and ``queuewatch_scrape_errors_total`` + 1.
ETAs are exported only while finite: a queue that is not draining (not filling) has no
``queuewatch_queue_drain_eta_seconds`` (``..._full_eta_seconds``) sample, instead of +Inf.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from queuewatch.errors import QueuewatchError
from queuewatch.metrics.cluster import cluster_families
from queuewatch.metrics.select import QueueSelector, Selection
from queuewatch.monitor.model import Snapshot
from queuewatch.monitor.pacing import Pace

log = logging.getLogger(__name__)

Q_LABELS = ["vhost", "queue"]


class QueuewatchCollector:
    """Builds every ``queuewatch_*`` family from ``source()`` at each scrape."""

    def __init__(self, source: Callable[[], Snapshot], stale_after: float = 10.0,
                 last_good: Callable[[], Snapshot | None] | None = None,
                 clock: Callable[[], float] = time.time,
                 selector: QueueSelector | None = None, lean: bool = False,
                 pace: Callable[[], Pace | None] | None = None) -> None:
        self.source = source
        self.pace = pace
        """The background poll's current pace (interval, stretched or not), if any."""
        self.lean = lean
        """Leave depth and consumer counts to rabbitmq_prometheus (setting export_lean)."""
        self.selector = selector or QueueSelector()
        """Which queues are exported (patterns and cap)."""
        self.stale_after = stale_after
        """Seconds without a heartbeat after which a worker no longer counts as up."""
        self.last_good = last_good
        """The last good snapshot, for its age while polls fail."""
        self.clock = clock
        self.scrape_errors = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._built: tuple[Snapshot, list[Metric]] | None = None

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        snap = self.take()
        families: list[Metric] = [] if snap is None else self.families(snap)
        head = self.scrape_families(snap, started)
        return [*head[:3], *families, *head[3:]]

    def take(self) -> Snapshot | None:
        """The snapshot a scrape serves, or None when the source failed (counted as a scrape
        error; ``last_error`` says why)."""
        try:
            snap = self.source()
        except QueuewatchError as exc:
            self._failed(str(exc))
            log.warning("scrape failed: %s", exc)
            return None
        except Exception as exc:  # the HTTP edge: answer the scrape, log the bug
            self._failed(f"{type(exc).__name__}: {exc}")
            log.exception("scrape failed unexpectedly")
            return None
        self.last_error = None
        return snap

    def scrape_families(self, snap: Snapshot | None, started: float) -> list[Metric]:
        """What only the scrape knows, computed at scrape time: up, the error counter, this
        scrape's duration (since ``started``, a ``perf_counter``), the snapshot's age now, and
        the background poll's interval (stretched after slow polls)."""
        with self._lock:
            error_count = self.scrape_errors
        up = GaugeMetricFamily("queuewatch_up", "1 when the last poll of the management API "
                               "succeeded, else 0")
        up.add_metric([], 0.0 if snap is None else 1.0)
        errors = CounterMetricFamily("queuewatch_scrape_errors", "Scrapes whose snapshot failed "
                                     "(broker or management API unreachable, refused, ...)")
        errors.add_metric([], float(error_count))
        took = GaugeMetricFamily("queuewatch_scrape_duration_seconds",
                                 "Seconds this scrape took, snapshot included")
        took.add_metric([], time.perf_counter() - started)
        out: list[Metric] = [up, errors, took]
        good = snap if snap is not None else (self.last_good() if self.last_good else None)
        if good is not None:
            age = GaugeMetricFamily("queuewatch_snapshot_age_seconds", "Seconds since the "
                                    "snapshot behind the values was taken, at this scrape "
                                    "(grows while polls fail; absent before the first good "
                                    "poll)")
            age.add_metric([], good.age(self.clock()))
            out.append(age)
        current = self.pace() if self.pace is not None else None
        if current is not None:
            every = GaugeMetricFamily("queuewatch_poll_interval_seconds", "Seconds between the "
                                      "end of one background poll and the start of the next: "
                                      "the poll interval, stretched after a poll slower than it")
            every.add_metric([], current.pause)
            stretched = GaugeMetricFamily("queuewatch_poll_interval_stretched", "1 while the "
                                          "poll interval is stretched because polls take longer "
                                          "than it (see queuewatch_poll_duration_seconds)")
            stretched.add_metric([], 1.0 if current.stretched else 0.0)
            out += [every, stretched]
        return out

    def families(self, snap: Snapshot) -> list[Metric]:
        """The families of ``snap``, built once per snapshot (scrapes only read them)."""
        with self._lock:
            built = self._built
        if built is not None and built[0] is snap:
            return built[1]
        chosen = self.selector.select(snap.queues)
        families = [*snapshot_families(snap, self.stale_after, chosen, lean=self.lean),
                    *cluster_families(snap, chosen.queues)]
        with self._lock:
            self._built = (snap, families)
        return families

    def _failed(self, reason: str) -> None:
        with self._lock:
            self.scrape_errors += 1
            self.last_error = reason


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels if labels is not None else Q_LABELS)


def snapshot_families(snap: Snapshot, stale_after: float,
                      chosen: Selection | None = None, *, lean: bool = False) -> Iterable[Metric]:
    """Every metric family of one snapshot (no scrape bookkeeping), for the queues
    ``chosen`` (default: all of them); ``lean``: without the depth and consumer families
    that RabbitMQ's own exporter serves."""
    chosen = chosen or Selection(snap.queues, 0, 0)
    poll = _gauge("queuewatch_poll_duration_seconds", "Seconds the snapshot's poll took", [])
    poll.add_metric([], snap.poll_seconds)
    taken = _gauge("queuewatch_snapshot_timestamp_seconds", "When the snapshot was taken", [])
    taken.add_metric([], snap.taken_at)

    messages = _gauge("queuewatch_queue_messages", "Messages in the queue by state "
                      "(ready, unacked)", [*Q_LABELS, "state"])
    consumers = _gauge("queuewatch_queue_consumers", "Consumers attached to the queue")
    age = _gauge("queuewatch_queue_oldest_message_age_seconds", "Age of the oldest ready "
                 "message (absent when publishers set no timestamp)")
    drain = _gauge("queuewatch_queue_drain_eta_seconds", "Seconds until empty at the current "
                   "net rate (absent while not draining)")
    full = _gauge("queuewatch_queue_full_eta_seconds", "Seconds until the cap at the current net "
                  "rate (capped queues only; absent while not filling)")
    fill = _gauge("queuewatch_queue_fill_ratio", "Ready messages as a fraction of "
                  "x-max-length, which counts ready messages only (capped queues only)")
    cap = _gauge("queuewatch_queue_max_length_messages", "The queue's x-max-length")
    dlq = _gauge("queuewatch_queue_dlq_messages", "Messages in the queue's dead-letter queue",
                 [*Q_LABELS, "dlq"])
    stalled = _gauge("queuewatch_queue_stalled", "1 while the queue has messages and consumers "
                     "but saw no acks for several polls (absent otherwise)")
    orphaned = _gauge("queuewatch_queue_orphaned", "1 while the queue has messages and no "
                      "consumers, DLQs and delay levels excluded (absent otherwise)")
    stuck = _gauge("queuewatch_stuck_jobs", "In-flight jobs running longer than the queue's "
                   "stuck threshold (absent when none)")
    paused = _gauge("queuewatch_queue_paused", "1 while an operator has paused the queue "
                    "(queuewatch queues pause; absent otherwise): its backlog is expected")
    limit = _gauge("queuewatch_queue_rate_limit", "The queue's queue-wide rate limit in jobs/s "
                   "over every worker (absent without one)")
    scheduled = _gauge("queuewatch_queue_scheduled_jobs", "Jobs for the queue waiting for their "
                       "time in the delay levels (delayed, or waiting for a retry), from the job "
                       "events (absent when they are not read)")
    stuck_all = _gauge("queuewatch_stuck_jobs_overall", "Stuck jobs over all queues", [])
    stuck_all.add_metric([], len(snap.stuck_jobs))
    stalled_set, orphan_set = set(snap.stalled_queues), set(snap.orphaned_queues)
    stuck_by_queue: dict[str, int] = {}
    for s in snap.stuck_jobs:
        stuck_by_queue[s.queue] = stuck_by_queue.get(s.queue, 0) + 1
    qualified = snap.vhost is None
    exported = _gauge("queuewatch_queues_exported", "Queues exported by this scrape (see "
                      "export_include, export_exclude, export_max_queues)", [])
    exported.add_metric([], len(chosen.queues))
    left_out = _gauge("queuewatch_queues_not_exported", "Queues of the snapshot left out, by "
                      "reason: filtered (include/exclude patterns) or cap (export_max_queues)",
                      ["reason"])
    left_out.add_metric(["filtered"], chosen.filtered)
    left_out.add_metric(["cap"], chosen.capped)
    for q in chosen.queues:
        labels = [q.vhost, q.name]
        if q.ready is not None and q.unacked is not None:  # unknown while the queue is down
            messages.add_metric([*labels, "ready"], q.ready)
            messages.add_metric([*labels, "unacked"], q.unacked)
        consumers.add_metric(labels, q.consumers)
        if q.oldest_age is not None:
            age.add_metric(labels, q.oldest_age)
        if q.drain_eta is not None and math.isfinite(q.drain_eta):
            drain.add_metric(labels, q.drain_eta)
        if q.max_length:
            cap.add_metric(labels, q.max_length)
            fill.add_metric(labels, q.fill or 0.0)
            if q.full_eta is not None and math.isfinite(q.full_eta):
                full.add_metric(labels, q.full_eta)
        if q.dlq is not None and q.dlq_depth is not None:
            dlq.add_metric([*labels, q.dlq], q.dlq_depth)
        # sparse: present only for the queues concerned (keeps 5,000-queue scrapes lean)
        if q.ref(qualified) in stalled_set:
            stalled.add_metric(labels, 1.0)
        if q.ref(qualified) in orphan_set:
            orphaned.add_metric(labels, 1.0)
        if q.paused:
            paused.add_metric(labels, 1.0)
        if q.rate_limit is not None:
            limit.add_metric(labels, q.rate_limit)
        if q.scheduled is not None:
            scheduled.add_metric(labels, q.scheduled)
        if q.name in stuck_by_queue:
            stuck.add_metric(labels, stuck_by_queue[q.name])

    workers_up = _gauge("queuewatch_workers_up", "Workers whose last heartbeat is fresh and "
                        "that consume every queue they should (see "
                        "queuewatch_workers_not_consuming)", [])
    workers_up.add_metric([], sum(1 for w in snap.workers if w.heartbeat_state == "fresh"
                                  and w.heartbeat_age <= stale_after and not w.not_consuming))
    idle, live = worker_consumer_families(snap)
    hung = _gauge("queuewatch_workers_hung", "Workers silent while their connection stays open", [])
    hung.add_metric([], sum(1 for w in snap.workers if w.hung))
    hb_age = _gauge("queuewatch_worker_heartbeat_age_seconds", "Seconds since the worker's last "
                    "heartbeat", ["worker", "host"])
    in_flight = _gauge("queuewatch_worker_in_flight_jobs", "Jobs the worker is running (fresh "
                       "heartbeats only: absent for a worker gone, hung or not heard lately)",
                       ["worker", "host"])
    for w in snap.workers:
        hb_age.add_metric([w.worker_id, w.host], w.heartbeat_age)
        if w.heartbeat_state == "fresh":  # an old beat's in-flight list is old news
            in_flight.add_metric([w.worker_id, w.host], len(w.in_flight))

    # The same names as a producer's own registry (metrics/producer.py): one alert rule
    # reads either source; here from the producers' heartbeats (outbox-enabled ones only).
    ob_depth = _gauge("queuewatch_producer_outbox_depth", "Jobs waiting in the producer's "
                      "outbox (from its heartbeat)", ["producer"])
    ob_age = _gauge("queuewatch_producer_outbox_oldest_age_seconds", "Age of the oldest job in "
                    "the producer's outbox (0 when empty; from its heartbeat)", ["producer"])
    for p in snap.producers:
        if p.heartbeat_state == "fresh":
            ob_depth.add_metric([p.producer_id], p.outbox_depth)
            ob_age.add_metric([p.producer_id], p.outbox_oldest_age or 0.0)

    running = _gauge("queuewatch_node_running", "1 when the broker node is running", ["node"])
    alarm = _gauge("queuewatch_node_alarm", "1 while a resource alarm blocks publishers",
                   ["node", "resource"])
    for n in snap.nodes:
        running.add_metric([n.name], 1.0 if n.running else 0.0)
        alarm.add_metric([n.name, "memory"], 1.0 if n.mem_alarm else 0.0)
        alarm.add_metric([n.name, "disk"], 1.0 if n.disk_alarm else 0.0)
    alerts = _gauge("queuewatch_alerts", "Alerts in the snapshot by severity", ["severity"])
    for severity in ("warning", "critical"):
        alerts.add_metric([severity], sum(1 for a in snap.alerts if a.severity == severity))
    basics = [] if lean else [messages, consumers]
    families = [poll, taken, exported, left_out, *basics, age, drain, full, fill, cap, dlq,
                stalled, orphaned, paused, limit, scheduled, stuck, stuck_all, workers_up, hung, hb_age, in_flight, running, alarm,
                alerts, idle, live, ob_depth, ob_age]
    feed = snap.heartbeats
    if feed is None:
        return families
    beats_up = _gauge("queuewatch_heartbeats_up", "1 while worker heartbeats reach the exporter "
                      "(its own probe comes back through RabbitMQ); while 0, worker and "
                      "stuck-job metrics are absent: unknown, not zero", [])
    beats_up.add_metric([], 1.0 if feed.live else 0.0)
    if feed.live:
        return [*families, beats_up]
    from_beats = {id(f) for f in (stuck, stuck_all, workers_up, hung, hb_age, in_flight, idle,
                                  live, ob_depth, ob_age)}
    return [*(f for f in families if id(f) not in from_beats), beats_up]


def worker_consumer_families(snap: Snapshot) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    """Workers that beat but do not consume, and each worker's consumer per queue (1 live,
    0 not), from fresh heartbeats only (an old beat's consumer states are old news)."""
    idle = _gauge("queuewatch_workers_not_consuming", "Workers beating but not consuming some "
                  "queue they should (consumer cancelled, channel closed, queue missing or "
                  "down): see the worker_not_consuming alert", [])
    live = _gauge("queuewatch_worker_consumer_live", "1 while the worker consumes the queue, 0 "
                  "while its consumer is not live (fresh heartbeats only)",
                  ["worker", "host", "queue"])
    count = 0
    for w in snap.workers:
        if w.heartbeat_state != "fresh":
            continue
        count += 1 if w.not_consuming else 0
        for c in w.consumers:
            live.add_metric([w.worker_id, w.host, c.queue], 1.0 if c.live else 0.0)
    idle.add_metric([], count)
    return idle, live
