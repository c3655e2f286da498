"""Queue state (pause, run-time limits) without a broker: records, limits, keys, the monitor's
view and its alerts."""

from __future__ import annotations

import pytest

from queuewatch.config import Thresholds
from queuewatch.errors import ConfigError
from queuewatch.events.queuestate import Change, LimitSpec, QueueState, check_rate, new_change
from queuewatch.monitor.alerts import queue_alerts
from queuewatch.monitor.model import QueueStats, WorkerStats
from queuewatch.monitor.paused import with_queue_state
from queuewatch.telemetry import ConsumerStatus
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker.job import Job
from queuewatch.worker.limits import key_of, safe_key
from queuewatch.worker.refill import permits_per_token


def test_a_change_round_trips_and_junk_is_refused():
    change = new_change("emails", "limit", "ann@host", LimitSpec(20.0, 5.0, "payload:customer"))
    assert Change.decode(change.encode()) == change
    for junk in (b"", b"[]", b'{"queue": "q", "kind": "explode"}',
                 b'{"queue": "q", "kind": "limit", "limit": {"rate": -1}}'):
        with pytest.raises(ValueError):
            Change.decode(junk)


@pytest.mark.parametrize("rate", [0, -5, float("inf"), float("nan"), True, "10"])
def test_bad_rates_are_one_clear_error(rate):
    with pytest.raises(ConfigError, match="> 0"):
        check_rate(rate)  # type: ignore[arg-type]


def test_a_per_key_limit_needs_its_key_and_the_topology_says_so_too():
    with pytest.raises(ConfigError, match="rate_limit_key"):
        LimitSpec(10.0, 2.0, None)
    with pytest.raises(ConfigError, match="payload:FIELD"):
        LimitSpec(None, 2.0, "customer")
    with pytest.raises(ConfigError, match="rate_limit_key"):
        QueueSpec("q", rate_limit_per_key=2.0)
    with pytest.raises(ConfigError, match="must be > 0"):
        QueueSpec("q", rate_limit=0)
    with pytest.raises(ConfigError, match="must be > 0"):
        QueueSpec("q", rate_limit_per_process=-1)


def test_keys_come_from_the_payload_or_a_header():
    job = Job("q", "j1", {"customer": 42}, 1, 3, headers={"x-tenant": "acme"})
    assert key_of(job, "payload:customer") == "42"
    assert key_of(job, "header:x-tenant") == "acme"
    assert key_of(job, "payload:missing") is None
    assert key_of(Job("q", "j2", b"raw", 1, 3), "payload:customer") is None
    assert safe_key("acme-1") == "acme-1"
    odd = safe_key("a b/c" * 50)
    assert odd.startswith("h-") and len(odd) < 40


def test_tokens_carry_more_permits_only_above_100_per_second():
    assert [permits_per_token(r) for r in (0.5, 20, 100, 250, 1e6)] == [1, 1, 1, 2, 10_000]


def _queue(name: str, ready: int = 7) -> QueueStats:
    return QueueStats("v", name, "classic", "running", ready, 0, 0, oldest_age=3600.0)


def test_paused_queues_from_the_stream_or_heartbeats_get_no_lag_alert():
    worker = WorkerStats("w1", "h", 1, ("beat",), 1, 0.0, 0, (), 0.0, 0, 0.0, 0.0,
                         consumers=(ConsumerStatus("beat", False, 0.0, "paused", "paused"),))
    states = {"stream": QueueState("stream", paused=True, limit=LimitSpec(20.0))}
    topo = Topology(queues=(QueueSpec("limited", rate_limit=5.0),))
    out = {q.name: q for q in with_queue_state(
        [_queue("stream"), _queue("beat"), _queue("other"), _queue("limited")], [worker],
        states, topo, "v")}
    assert (out["stream"].paused, out["beat"].paused, out["other"].paused) == (True, True, False)
    assert (out["stream"].rate_limit, out["limited"].rate_limit) == (20.0, 5.0)
    # A paused worker is not "not consuming"
    assert worker.not_consuming == ()
    t = Thresholds()
    assert [a.kind for a in queue_alerts(out["other"], t)] == ["oldest_age"]
    assert queue_alerts(out["stream"], t) == [] and queue_alerts(out["beat"], t) == []
    # States of another vhost do not apply
    [other_vhost] = with_queue_state([_queue("stream")], [], states, None, "elsewhere")
    assert not other_vhost.paused


def test_status_json_and_exporter_show_paused_and_the_limit():
    from dataclasses import replace

    from queuewatch.cli.cmd_status import render_status
    from queuewatch.metrics import QueuewatchCollector, build_registry
    from queuewatch.monitor.jsonview import queue_to_json
    from queuewatch.monitor.model import BrokerInfo, Snapshot

    paused = replace(_queue("emails"), paused=True)
    limited = replace(_queue("api"), rate_limit=20.0, ack_rate=19.5)
    snap = Snapshot(taken_at=1.0, vhost="v", broker=BrokerInfo(url="http://x"),
                    queues=(paused, limited))
    text = render_status(snap)
    assert "emails [paused]" in text and "19.5/20" in text
    assert queue_to_json(paused)["paused"] is True and queue_to_json(limited)["rate_limit"] == 20.0
    registry = build_registry(QueuewatchCollector(lambda: snap))
    labels = {"vhost": "v", "queue": "emails"}
    assert registry.get_sample_value("queuewatch_queue_paused", labels) == 1.0
    assert registry.get_sample_value("queuewatch_queue_paused", {"vhost": "v", "queue": "api"}) is None
    assert registry.get_sample_value("queuewatch_queue_rate_limit",
                                     {"vhost": "v", "queue": "api"}) == 20.0
