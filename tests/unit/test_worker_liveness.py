"""Workers that beat but do not consume, without a broker: the heartbeat field, the monitor's
state, alert, metrics, CLI and JSON; the consumer_timeout warnings; one run per job key."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

import pytest

from queuewatch.cli.cmd_workers import render_workers
from queuewatch.config import Thresholds
from queuewatch.metrics import QueuewatchCollector, build_registry
from queuewatch.monitor.alerts import build_alerts
from queuewatch.monitor.detect import build_workers, find_orphaned
from queuewatch.monitor.heartbeats import StaticHeartbeats
from queuewatch.monitor.jsonview import worker_to_json
from queuewatch.monitor.model import BrokerInfo, Snapshot
from queuewatch.monitor.queues import parse_queue
from queuewatch.telemetry import ConsumerStatus, Heartbeat
from queuewatch.topology import QueueSpec
from queuewatch.worker.claims import Claims
from queuewatch.worker.liveness import broker_timeout_from, consumer_timeout_line, timeout_warnings

NOW = 1_700_000_000.0
CLOSED_TEXT = ("PRECONDITION_FAILED - delivery acknowledgement on channel 2 timed out. Timeout "
               "value used: 10000 ms. This timeout value can be configured, see consumers doc "
               "guide to learn more")


def beat(worker: str, *consumers: ConsumerStatus, sent_at: float = NOW) -> Heartbeat:
    return Heartbeat(worker, "h", 7, sent_at, ("jobs",), 4, 1.0, 100, consumers=consumers,
                     connection_name=f"queuewatch-worker {worker}")


def test_heartbeat_carries_consumers_and_old_beats_still_decode():
    # Given a beat with one live and one cancelled consumer
    hb = beat("w1", ConsumerStatus("jobs", True, NOW - 50),
              ConsumerStatus("mail", False, NOW - 12, "cancelled_by_broker", "queue deleted"))
    # Then it round-trips
    assert Heartbeat.from_json(hb.to_json()) == hb
    # And a beat from a worker that predates the field decodes, with consumers unknown (empty)
    old = {k: v for k, v in json.loads(hb.to_json()).items() if k != "consumers"}
    assert Heartbeat.from_json(json.dumps(old)).consumers == ()
    # And a newer worker's extra field inside a consumer is ignored
    raw = json.loads(hb.to_json())
    raw["consumers"][0]["lease"] = 3
    assert Heartbeat.from_json(json.dumps(raw)).consumers[0].queue == "jobs"


def workers_from(*beats_at: tuple[Heartbeat, float]):  # type: ignore[no-untyped-def]
    source = StaticHeartbeats(clock=lambda: NOW)
    for hb, received in beats_at:
        source.add(hb, received_at=received)
    return build_workers(source.latest(), NOW, stale_after=10, open_connections=None)


def test_a_beating_worker_that_does_not_consume_is_its_own_state_never_up():
    # Given w1 consuming, w2 beating with its consumer cancelled 30 s ago on its own clock
    # (which runs 100 s ahead of ours), and w3 silent with a cancelled consumer
    gone = ConsumerStatus("jobs", False, NOW + 100 - 30, "cancelled_by_broker", "queue deleted")
    w1, w2, w3 = workers_from(
        (beat("w1", ConsumerStatus("jobs", True, NOW - 5)), NOW - 1),
        (beat("w2", gone, sent_at=NOW + 100), NOW - 1),
        (beat("w3", ConsumerStatus("jobs", False, NOW - 90, "link_down")), NOW - 60),
    )
    # Then only w2 is not consuming; its "since" is on our clock
    assert (w1.state, w2.state, w3.state) == ("up", "not_consuming", "stale")
    assert [c.queue for c in w2.not_consuming] == ["jobs"]
    assert w2.consumers[0].since == pytest.approx(NOW - 1 - 30)
    # And a worker too old to report consumers is up (unknown is not "none")
    [old] = workers_from((beat("w4"), NOW - 1))
    assert old.state == "up" and old.not_consuming == ()


def jobs_queue(total: int):  # type: ignore[no-untyped-def]
    return parse_queue({"name": "jobs", "vhost": "v", "messages_ready": total,
                        "messages_unacknowledged": 0, "consumers": 0}, NOW)


def test_alert_says_which_queue_since_when_why_and_what_to_do():
    gone = ConsumerStatus("jobs", False, NOW - 20, "cancelled_by_broker",
                          "the broker cancelled the consumer of 'jobs'")
    workers = workers_from((beat("w2", gone), NOW - 1))
    q = jobs_queue(40)
    alerts = build_alerts([q], [], workers, [], [], find_orphaned([q]), Thresholds())
    by_kind = {a.kind: a for a in alerts}
    idle = by_kind["worker_not_consuming"]
    assert idle.target == "w2" and idle.severity == "warning"
    # (cancelled 20 s before a beat that arrived 1 s ago: 21 s by now)
    assert "'jobs'" in idle.reason and "21s" in idle.reason and "cancelled_by_broker" in idle.reason
    assert "queuewatch declare" in idle.reason
    # And the orphaned queue does not send the operator to start another worker
    orphan = by_kind["orphaned"]
    assert "start a worker" not in orphan.reason
    assert "w2" in orphan.reason and "not" in orphan.reason
    # And after a minute it is critical
    workers = workers_from((beat("w2", ConsumerStatus("jobs", False, NOW - 90, "queue_down")),
                            NOW - 1))
    [idle] = [a for a in build_alerts([], [], workers, [], [], [], Thresholds())
              if a.kind == "worker_not_consuming"]
    assert idle.severity == "critical" and "node" in idle.reason
    # Without any worker for it, an orphaned queue still says: start a worker
    [orphan] = build_alerts([q], [], [], [], [], ["jobs"], Thresholds())
    assert "start a worker" in orphan.reason


def test_metrics_cli_and_json_show_not_consuming():
    gone = ConsumerStatus("jobs", False, NOW - 20, "consumer_timeout", CLOSED_TEXT)
    workers = workers_from((beat("w1", ConsumerStatus("jobs", True, NOW - 5)), NOW - 1),
                           (beat("w2", gone), NOW - 1))
    alerts = build_alerts([], [], workers, [], [], [], Thresholds())
    snap = Snapshot(taken_at=NOW, vhost="v", broker=BrokerInfo(url="http://x"), workers=workers,
                    alerts=alerts)
    registry = build_registry(QueuewatchCollector(lambda: snap))
    value = registry.get_sample_value
    assert value("queuewatch_workers_up") == 1
    assert value("queuewatch_workers_not_consuming") == 1
    assert value("queuewatch_worker_consumer_live", {"worker": "w2", "host": "h", "queue": "jobs"}) == 0
    assert value("queuewatch_worker_consumer_live", {"worker": "w1", "host": "h", "queue": "jobs"}) == 1
    text = render_workers(snap)
    assert "NOT CONSUMING" in text and "consumer_timeout" in text and "rabbitmq.conf" in text
    doc = worker_to_json(workers[1])
    assert doc["state"] == "not_consuming" and doc["not_consuming"] == ["jobs"]
    assert doc["consumers"][0]["cause"] == "consumer_timeout"
    assert doc["consumers"][0]["not_consuming_seconds"] == pytest.approx(21, abs=0.01)
    assert worker_to_json(workers[0])["state"] == "up"


def test_job_time_limits_against_the_broker_consumer_timeout():
    specs = [QueueSpec("long", timeout=3600), QueueSpec("ok", timeout=10), QueueSpec("free"),
             QueueSpec("deep", timeout=200)]
    lines = timeout_warnings(specs, broker_timeout=1800, prefetch=100, concurrency=10)
    # Then "long" exceeds it outright, "deep" only by waiting in the prefetch buffer
    assert len(lines) == 2
    assert "'long'" in lines[0] and "3600s" in lines[0] and "consumer_timeout" in lines[0]
    assert "'deep'" in lines[1] and "prefetch" in lines[1]
    assert timeout_warnings(specs[1:3], broker_timeout=1800, prefetch=100, concurrency=10) == []


def test_consumer_timeout_line_names_the_broker_value_and_the_fix():
    assert broker_timeout_from(CLOSED_TEXT) == 10.0 and broker_timeout_from("other") is None
    state = ConsumerStatus("jobs", False, NOW, "consumer_timeout", CLOSED_TEXT)
    line = consumer_timeout_line(state, QueueSpec("jobs", timeout=75), [], assumed=1800)
    assert "10s" in line and "'jobs'" in line and "75s" in line
    assert "raise consumer_timeout" in line and "time limit" in line
    assert "duplicates" in line


async def test_a_second_delivery_of_a_key_waits_for_the_first():
    claims = Claims()
    assert await claims.acquire("k") is False
    second = asyncio.ensure_future(claims.acquire("k"))
    third = asyncio.ensure_future(claims.acquire("k"))
    await asyncio.sleep(0.01)
    assert not second.done() and not third.done()
    # When the first ends, exactly one waiter takes the key
    claims.release("k")
    await asyncio.sleep(0.01)
    assert second.done() != third.done() and "k" in claims
    claims.release("k")
    await asyncio.sleep(0.01)
    assert second.done() and third.done() and await second is True
    claims.release("k")
    assert "k" not in claims and len(claims) == 0
    # Other keys never wait
    assert await claims.acquire("other") is False


def test_consumer_status_is_plain_data():
    c = ConsumerStatus("jobs", False, NOW, "queue_missing", "no queue 'jobs'")
    assert asdict(c) == {"queue": "jobs", "live": False, "since": NOW, "cause": "queue_missing",
                         "reason": "no queue 'jobs'"}
