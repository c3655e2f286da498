"""The staleness judgement: a worker's silence counts only while our heartbeat feed was live
(no broker, no Textual)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pytest import approx

from queuewatch.config import Thresholds
from queuewatch.metrics.collector import snapshot_families
from queuewatch.monitor.alerts import build_alerts
from queuewatch.monitor.detect import build_workers, find_stuck_jobs, needs_connection_check
from queuewatch.monitor.freshness import ALWAYS_LIVE, feed_alert, judge_beat
from queuewatch.monitor.heartbeats import PROBE_TIMEOUT, HeartbeatFeed, StaticHeartbeats
from queuewatch.monitor.model import BrokerInfo, FeedStatus, Snapshot
from queuewatch.telemetry import Heartbeat, InFlightJob

NOW = 1_000_000.0
STALE = 10.0


def test_a_recent_beat_is_fresh_and_a_long_silence_with_a_live_feed_is_stale():
    feed = FeedStatus(True, NOW - 3600, checked_at=NOW - 0.5)
    assert judge_beat(NOW - 2, NOW, STALE, feed) == "fresh"
    assert judge_beat(NOW - 30, NOW, STALE, feed) == "stale"
    # a source that cannot fail (filled by hand) judges by the beats alone
    assert judge_beat(NOW - 30, NOW, STALE) == "stale"
    assert judge_beat(NOW - 3, NOW, STALE, ALWAYS_LIVE) == "fresh"


def test_while_the_feed_is_down_every_worker_is_unknown():
    down = FeedStatus(False, NOW - 20, "no connection to RabbitMQ")
    assert judge_beat(NOW - 1, NOW, STALE, down) == "unknown"
    assert judge_beat(NOW - 600, NOW, STALE, down) == "unknown"


def test_after_the_feed_came_back_silence_counts_from_then():
    # Given a feed live again for 4 s after an outage, proven 0.5 s ago
    back = FeedStatus(True, NOW - 4, checked_at=NOW - 0.5)
    # Then a worker last heard 60 s ago (before the outage) is unknown, not stale...
    assert judge_beat(NOW - 60, NOW, STALE, back) == "unknown"
    # ...until it stays silent for STALE seconds of live feed
    later = NOW + 7
    assert judge_beat(NOW - 60, later, STALE, replace_checked(back, later)) == "stale"


def test_silence_counts_only_up_to_the_last_proof_that_the_feed_worked():
    # Given a feed last proven 8 s ago (its probes stopped; not yet declared down)
    feed = FeedStatus(True, NOW - 3600, checked_at=NOW - 8)
    # Then a worker last heard 12 s ago was silent only 4 s of proven feed: unknown
    assert judge_beat(NOW - 12, NOW, STALE, feed) == "unknown"
    assert judge_beat(NOW - 20, NOW, STALE, feed) == "stale"


def replace_checked(feed: FeedStatus, at: float) -> FeedStatus:
    return FeedStatus(feed.live, feed.since, feed.reason, checked_at=at)


def beat(worker: str, received: float, jobs: tuple[InFlightJob, ...] = (),
         conn: str | None = None) -> StaticHeartbeats:
    beats = StaticHeartbeats(clock=lambda: NOW)
    beats.add(Heartbeat(worker, "h", 1, received, ("jobs",), 4, 1.0, 100, in_flight=jobs,
                        connection_name=conn), received_at=received)
    return beats


def test_no_hung_worker_and_no_stuck_job_from_a_dead_feed():
    # Given a worker last heard 60 s ago holding a job started 400 s ago, its connection open
    job = InFlightJob("j1", "jobs", 1, started_at=NOW - 400)
    beats = beat("w1", NOW - 60, (job,), conn="c1").latest()
    down = FeedStatus(False, NOW - 61, "our probe did not come back")
    # When the feed is down, Then it is unknown: not hung, its job not stuck, no lookup
    assert not needs_connection_check(beats, NOW, STALE, down)
    (w,) = build_workers(beats, NOW, STALE, {"c1"}, down)
    assert (w.heartbeat_state, w.hung, w.connection_open) == ("unknown", False, None)
    assert find_stuck_jobs([w], NOW, lambda q: 300.0) == ()
    # When the feed has been live (and proven) for 30 s without a word from it
    live = FeedStatus(True, NOW - 30, checked_at=NOW - 0.2)
    assert needs_connection_check(beats, NOW, STALE, live)
    (w,) = build_workers(beats, NOW, STALE, {"c1"}, live)
    # Then it is stale and hung (the broker lists its connection), its job not listed as stuck
    assert (w.heartbeat_state, w.hung, w.connection_open) == ("stale", True, True)
    assert find_stuck_jobs([w], NOW, lambda q: 300.0) == ()
    kinds = {a.kind for a in build_alerts([], [], [w], (), (), (), Thresholds())}
    assert kinds == {"hung_worker"}


def test_a_stuck_job_is_aged_up_to_the_beat_that_listed_it():
    # Given a fresh beat 3 s old listing a job that had run 0.1 s then
    job = InFlightJob("j1", "jobs", 1, started_at=NOW - 3.1)
    workers = build_workers(beat("w1", NOW - 3, (job,)).latest(), NOW, STALE, None,
                            FeedStatus(True, NOW - 60, checked_at=NOW - 3))
    # Then with a 3 s threshold it is not stuck (it may have ended since)
    assert workers[0].heartbeat_state == "fresh"
    assert find_stuck_jobs(workers, NOW, lambda q: 3.0) == ()
    assert [s.age for s in find_stuck_jobs(workers, NOW, lambda q: 0.05)] == [approx(0.1)]


def test_a_beat_delivered_late_does_not_age_its_jobs():
    # Given a beat sent 8 s ago (held by a silent link, then flushed) received now, listing
    # a job that had run 0.2 s when the beat was sent
    beats = StaticHeartbeats(clock=lambda: NOW)
    job = InFlightJob("j1", "jobs", 1, started_at=NOW - 8.2)
    beats.add(Heartbeat("w1", "h", 1, NOW - 8, ("jobs",), 4, 1.0, 100, in_flight=(job,)),
              received_at=NOW)
    workers = build_workers(beats.latest(), NOW, STALE, None,
                            FeedStatus(True, NOW, checked_at=NOW))
    # Then the job is 0.2 s old, not 8.2 s: no stuck job over a 3 s threshold
    assert find_stuck_jobs(workers, NOW, lambda q: 3.0) == ()
    assert [s.age for s in find_stuck_jobs(workers, NOW, lambda q: 0.1)] == [approx(0.2)]


def test_feed_alert_only_while_down():
    assert feed_alert(None, NOW) is None
    assert feed_alert(FeedStatus(True, NOW - 5), NOW) is None
    alert = feed_alert(FeedStatus(False, NOW - 12, "no connection to RabbitMQ"), NOW)
    assert alert is not None and alert.kind == "heartbeats_lost" and alert.severity == "warning"
    assert "12s" in alert.reason and "no connection to RabbitMQ" in alert.reason


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Probe:
    routing_key: str
    body: bytes = b""


def test_heartbeat_feed_is_live_only_while_its_probes_come_back():
    clock = Clock()
    feed = HeartbeatFeed(clock)
    # Given a new feed: down until its first probe is back
    assert not feed.feed().live and feed.feed().reason == "not subscribed yet"
    asyncio.run(feed.on_message(Probe(feed.probe_key)))  # type: ignore[arg-type]
    assert feed.feed() == FeedStatus(True, NOW, checked_at=NOW)
    # When probes keep coming, it stays live since the first one
    clock.now += 1
    feed.probe_back()
    assert feed.feed() == FeedStatus(True, NOW, checked_at=NOW + 1)
    # When none comes back for longer than PROBE_TIMEOUT, it is down since the last one
    clock.now += PROBE_TIMEOUT + 0.5
    status = feed.feed()
    assert not status.live and status.since == NOW + 1 and "stopped coming back" in (status.reason or "")
    # When one comes back, it is live again, since then
    feed.probe_back()
    assert feed.feed().live and feed.feed().since == clock.now
    # When the subscription is lost, it is down at once with that reason
    feed.lost("no connection to RabbitMQ")
    assert feed.feed() == FeedStatus(False, clock.now, "no connection to RabbitMQ")


def test_heartbeat_feed_keeps_workers_through_its_own_outage():
    clock = Clock()
    feed = HeartbeatFeed(clock, forget_after=300)
    feed.probe_back()
    feed.receive(Heartbeat("w1", "h", 1, NOW, ("jobs",), 4, 1.0, 100).to_json())
    feed.receive(b"not json")
    assert feed.decode_errors == 1
    # Given our own outage of 10 minutes
    feed.lost("link down")
    clock.now += 600
    # Then the worker is still known (unknown state), not forgotten
    assert set(feed.latest()) == {"w1"}
    # And after the feed is back, it is forgotten only after forget_after of live feed
    for _ in range(300):  # a probe a second: 299 s of live feed
        clock.now += 1
        feed.probe_back()
    assert set(feed.latest()) == {"w1"}
    for _ in range(2):
        clock.now += 1
        feed.probe_back()
    assert feed.latest() == {}


def test_exporter_leaves_out_worker_metrics_while_the_feed_is_down():
    job = InFlightJob("j1", "jobs", 1, started_at=NOW - 400)
    workers = build_workers(beat("w1", NOW - 60, (job,), conn="c1").latest(), NOW, STALE,
                            None, FeedStatus(False, NOW - 61))
    snap = Snapshot(taken_at=NOW, vhost="v", broker=BrokerInfo("http://x"), workers=workers,
                    heartbeats=FeedStatus(False, NOW - 61, "down"))
    names = {f.name: f for f in snapshot_families(snap, STALE)}
    assert names["queuewatch_heartbeats_up"].samples[0].value == 0
    for gone in ("queuewatch_workers_hung", "queuewatch_workers_up", "queuewatch_stuck_jobs",
                 "queuewatch_stuck_jobs_overall", "queuewatch_worker_heartbeat_age_seconds"):
        assert gone not in names, gone
    live = Snapshot(taken_at=NOW, vhost="v", broker=BrokerInfo("http://x"),
                    heartbeats=FeedStatus(True, NOW - 61, checked_at=NOW))
    names = {f.name: f for f in snapshot_families(live, STALE)}
    assert names["queuewatch_heartbeats_up"].samples[0].value == 1
    assert names["queuewatch_workers_hung"].samples[0].value == 0
    # without heartbeats at all (--no-heartbeats) the metrics are as before, and no feed gauge
    names = {f.name for f in snapshot_families(Snapshot(NOW, "v", BrokerInfo("x")), STALE)}
    assert "queuewatch_workers_hung" in names and "queuewatch_heartbeats_up" not in names


def test_a_beat_delivered_before_the_feed_was_proven_live_is_not_fresh():
    # Given a feed proven live again 1 s ago, after a silent link flushed what it held
    back = FeedStatus(True, NOW - 1, checked_at=NOW - 0.1)
    # Then a beat delivered 1.5 s ago (just before the first probe came back) may be old
    # news: unknown, not fresh, until it is silent long enough of live feed to be stale
    assert judge_beat(NOW - 1.5, NOW, STALE, back) == "unknown"
    assert judge_beat(NOW - 1.5, NOW + 10, STALE, replace_checked(back, NOW + 10)) == "stale"
    # And a beat heard since the proof is fresh
    assert judge_beat(NOW - 0.5, NOW, STALE, back) == "fresh"
