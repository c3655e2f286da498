"""Pure monitor logic: parsing queue records, lag, ETAs, detectors, alerts, history, JSON."""

from __future__ import annotations

import json
import math

from queuewatch.config import Thresholds
from queuewatch.monitor.alerts import build_alerts
from queuewatch.monitor.detect import StallTracker, build_workers, find_orphaned, find_stuck_jobs
from queuewatch.monitor.heartbeats import StaticHeartbeats
from queuewatch.monitor.history import QueueHistory
from queuewatch.monitor.jsonview import queue_to_json
from queuewatch.monitor.model import NodeStats, fmt_duration
from queuewatch.monitor.queues import drain_eta, full_eta, parse_queue
from queuewatch.telemetry import Heartbeat, InFlightJob

NOW = 1_700_000_000.0


def raw(name: str = "jobs", **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": name, "vhost": "v", "type": "classic", "state": "running",
        "messages_ready": 0, "messages_unacknowledged": 0, "consumers": 0, "arguments": {},
    }
    base.update(kw)
    return base


def rates(publish: float = 0.0, ack: float = 0.0) -> dict[str, object]:
    return {"publish_details": {"rate": publish}, "ack_details": {"rate": ack}}


def test_oldest_age_is_unknown_not_zero_without_timestamps():
    # Given a foreign queue with messages but no head timestamp
    q = parse_queue(raw(messages_ready=3, head_message_timestamp=None), NOW)
    # Then the age is unknown, shown as such
    assert q.oldest_age is None and not q.oldest_age_known
    assert fmt_duration(q.oldest_age) == "unknown"
    assert queue_to_json(q)["oldest_age_seconds"] is None
    assert queue_to_json(q)["oldest_age_text"] == "unknown"


def test_oldest_age_from_head_timestamp_and_zero_when_empty():
    q = parse_queue(raw(messages_ready=3, head_message_timestamp=NOW - 42), NOW)
    assert q.oldest_age == 42 and q.oldest_age_known
    empty = parse_queue(raw(head_message_timestamp=None), NOW)
    assert empty.oldest_age == 0.0


def test_drain_eta_sign_for_growing_and_draining():
    growing = parse_queue(raw(messages_ready=100, message_stats=rates(publish=10, ack=2)), NOW)
    draining = parse_queue(raw(messages_ready=100, message_stats=rates(publish=2, ack=12)), NOW)
    assert math.isinf(growing.drain_eta or 0)
    assert draining.drain_eta == 10.0
    assert drain_eta(0, 5.0) == 0.0
    # an auto-ack consumer drains too
    noack = parse_queue(raw(messages_ready=50, message_stats={
        "deliver_no_ack_details": {"rate": 5.0}}), NOW)
    assert noack.drain_eta == 10.0
    assert json.dumps(queue_to_json(growing))  # no Infinity in JSON
    assert queue_to_json(growing)["drain_eta_text"] == "never"


def test_fill_and_full_eta_from_argument_or_policy():
    # x-max-length counts ready messages only: the 10 unacked ones take no room
    q = parse_queue(raw(messages_ready=40, messages_unacknowledged=10,
                        arguments={"x-max-length": 100}, message_stats=rates(publish=5)), NOW)
    assert q.fill == 0.4 and q.full_eta == 12.0
    # 10 workers x prefetch 100 on a 2,000 cap: an empty queue is empty, not "50% full"
    busy = parse_queue(raw(messages_ready=0, messages_unacknowledged=1000,
                           arguments={"x-max-length": 2000}), NOW)
    assert busy.fill == 0.0 and math.isinf(busy.full_eta or 0)
    by_policy = parse_queue(raw(messages_ready=10, effective_policy_definition={"max-length": 20}), NOW)
    assert by_policy.max_length == 20 and by_policy.fill == 0.5 and math.isinf(by_policy.full_eta or 0)
    assert parse_queue(raw(), NOW).full_eta is None
    assert full_eta(100, 100, 0.0) == 0.0


def test_orphaned_excludes_dlqs_and_empty_queues():
    qs = [
        parse_queue(raw("a", messages_ready=5), NOW),
        parse_queue(raw("a.dlq", messages_ready=5), NOW),
        parse_queue(raw("b"), NOW),
        parse_queue(raw("c", messages_ready=5, consumers=1), NOW),
        parse_queue(raw("queuewatch.delay.3", messages_ready=5), NOW),
        parse_queue(raw("queuewatch.due.a", messages_ready=5), NOW),
    ]
    assert find_orphaned(qs) == ("a",)


def test_stall_tracker_needs_consecutive_polls_without_acks():
    tracker = StallTracker(polls=2)
    busy = parse_queue(raw("s", messages_unacknowledged=5, consumers=1), NOW)
    assert tracker.update([busy], {("v", "s"): 10}) == ()
    assert tracker.update([busy], {("v", "s"): 10}) == ("s",)
    # an ack in between resets the count
    assert tracker.update([busy], {("v", "s"): 11}) == ()
    acking = parse_queue(raw("s", messages_unacknowledged=5, consumers=1,
                             message_stats=rates(ack=3)), NOW)
    assert tracker.update([acking], {}) == () and tracker.update([acking], {}) == ()


def test_workers_stuck_jobs_hung_and_alerts():
    beats = StaticHeartbeats(clock=lambda: NOW)
    job = InFlightJob("j1", "jobs", 2, started_at=NOW - 400)
    beats.add(Heartbeat("w1", "h", 1, NOW, ("jobs",), 4, 1.0, 100, in_flight=(job,),
                        succeeded=8, failed=1, interval=2.0), received_at=NOW - 1)
    beats.add(Heartbeat("w2", "h", 2, NOW, ("jobs",), 4, 1.0, 100, connection_name="c2"),
              received_at=NOW - 60)
    beats.add(Heartbeat("w3", "h", 3, NOW, ("jobs",), 4, 1.0, 100, connection_name="c3"),
              received_at=NOW - 60)
    workers = build_workers(beats.latest(), NOW, stale_after=10, open_connections={"c2"})
    w1, w2, w3 = workers
    assert w1.jobs_per_second == 4.5 and w1.errors == 1 and not w1.hung
    assert w2.hung and w2.connection_open
    assert not w3.hung and w3.connection_open is False
    stuck = find_stuck_jobs(workers, NOW, lambda q: 300.0)
    assert [s.job_id for s in stuck] == ["j1"] and stuck[0].age == 400
    assert find_stuck_jobs(workers, NOW, lambda q: 500.0) == ()
    nodes = [NodeStats("n1", running=True, mem_alarm=True)]
    alerts = build_alerts([], nodes, workers, stuck, [], [], Thresholds())
    kinds = {(a.kind, a.target, a.severity) for a in alerts}
    assert kinds == {("broker_alarm", "n1", "critical"), ("hung_worker", "w2", "critical"),
                     ("stuck_job", "j1", "warning")}
    assert all(a.reason for a in alerts)


def test_queue_alerts_thresholds():
    t = Thresholds(oldest_age_warning=60, oldest_age_critical=300, fill_warning=0.8)
    old = parse_queue(raw("old", messages_ready=1, head_message_timestamp=NOW - 400), NOW)
    fine = parse_queue(raw("fine", messages_ready=1, head_message_timestamp=NOW - 5), NOW)
    unknown = parse_queue(raw("unk", messages_ready=1), NOW)
    near = parse_queue(raw("near", messages_ready=85, arguments={"x-max-length": 100}), NOW)
    parked = parse_queue(raw("old.dlq", messages_ready=3, head_message_timestamp=NOW - 4000), NOW)
    alerts = build_alerts([old, fine, unknown, near, parked], [], [], [], [], [], t)
    assert {(a.kind, a.target, a.severity) for a in alerts} == {
        ("oldest_age", "old", "critical"), ("fill", "near", "warning")}


def test_history_is_bounded_and_forgets_vanished_queues():
    h = QueueHistory(size=3)
    for i in range(5):
        h.record(NOW + i, [parse_queue(raw("a", messages_ready=i), NOW)])
    assert h.totals("a") == [2, 3, 4]
    h.record(NOW + 9, [])
    assert h.get("a") == ()


def test_all_vhosts_keep_same_named_queues_apart():
    # Given "jobs" in two vhosts, both with old messages and no consumers
    qs = [parse_queue(raw("jobs", vhost=v, messages_ready=5,
                          head_message_timestamp=NOW - 600), NOW) for v in ("a", "b")]
    # Then, over all vhosts, each is its own orphan and has its own alerts, named vhost/name
    assert find_orphaned(qs, qualified=True) == ("a/jobs", "b/jobs")
    alerts = build_alerts(qs, [], [], [], [], ["a/jobs", "b/jobs"], Thresholds(), qualified=True)
    assert sorted((a.kind, a.target) for a in alerts) == [
        ("oldest_age", "a/jobs"), ("oldest_age", "b/jobs"),
        ("orphaned", "a/jobs"), ("orphaned", "b/jobs")]
    # And one vhost's snapshot names them as before
    assert find_orphaned(qs[:1]) == ("jobs",)


def test_a_due_queue_counts_the_jobs_its_dead_letter_worker_holds():
    # Given a due queue whose jobs wait for room in a full queue (held, not ready), and a job
    # queue with dead letters on their way to its DLQ
    due = parse_queue(raw("queuewatch.due.orders", messages_ready=0, messages_dlx=40), NOW)
    level = parse_queue(raw("queuewatch.delay.0", messages_ready=2, messages_dlx=3), NOW)
    job = parse_queue(raw("orders", type="quorum", messages_ready=1, messages_dlx=5), NOW)
    # Then the due queue and the level show them as waiting; the job queue's ready is its own
    assert (due.ready, level.ready, job.ready) == (40, 5, 1)
