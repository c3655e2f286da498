"""The collector builds fresh families per scrape and survives a failing source."""

from __future__ import annotations

import math

from queuewatch.errors import BrokerUnavailable
from queuewatch.metrics import QueuewatchCollector, build_registry
from queuewatch.monitor.model import BrokerInfo, NodeStats, Snapshot
from queuewatch.monitor.queues import parse_queue

NOW = 1_700_000_000.0


def snapshot(ready: int) -> Snapshot:
    q = parse_queue({"name": "jobs", "vhost": "v", "messages_ready": ready,
                     "messages_unacknowledged": 2, "consumers": 0,
                     "arguments": {"x-max-length": 100},
                     "message_stats": {"publish_details": {"rate": 1.0}}}, NOW)
    return Snapshot(taken_at=NOW, vhost="v", broker=BrokerInfo(url="http://x"),
                    nodes=(NodeStats("n1", running=True, disk_alarm=True),), queues=(q,),
                    orphaned_queues=("jobs",))


def samples_of(registry: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for m in registry.collect() for s in m.samples}  # type: ignore[attr-defined]


def test_collector_reports_snapshot_values_and_recovers_from_errors():
    # Given a source whose answer the test controls
    state: dict[str, object] = {"answer": snapshot(8)}

    def source() -> Snapshot:
        a = state["answer"]
        if isinstance(a, Exception):
            raise a
        return a  # type: ignore[return-value]

    registry = build_registry(QueuewatchCollector(source))
    q = (("queue", "jobs"), ("vhost", "v"))
    # When scraped: values equal the snapshot's
    s = samples_of(registry)
    assert s[("queuewatch_up", ())] == 1
    assert s[("queuewatch_queue_messages", (("queue", "jobs"), ("state", "ready"), ("vhost", "v")))] == 8
    assert s[("queuewatch_queue_fill_ratio", q)] == 0.08  # ready only: unacked take no room
    # not draining: no ETA sample at all (never +Inf, which graphs and aggregates badly)
    assert ("queuewatch_queue_drain_eta_seconds", q) not in s
    assert not any(math.isinf(v) for v in s.values())
    assert s[("queuewatch_queue_orphaned", q)] == 1
    assert s[("queuewatch_node_alarm", (("node", "n1"), ("resource", "disk")))] == 1
    assert s[("queuewatch_scrape_errors_total", ())] == 0
    # When the source fails: still answers, up 0, error counted, no stale queue numbers
    state["answer"] = BrokerUnavailable("down")
    s = samples_of(registry)
    assert s[("queuewatch_up", ())] == 0
    assert s[("queuewatch_scrape_errors_total", ())] == 1
    assert not any(name == "queuewatch_queue_messages" for name, _ in s)
    # Then it recovers with fresh families
    state["answer"] = snapshot(20)
    assert registry.get_sample_value("queuewatch_up") == 1
    assert registry.get_sample_value("queuewatch_queue_messages",
                                     {"vhost": "v", "queue": "jobs", "state": "ready"}) == 20
    assert registry.get_sample_value("queuewatch_scrape_errors_total") == 1


def test_an_unexpected_failure_still_answers_the_scrape():
    def broken() -> Snapshot:
        raise KeyError("items")

    collector = QueuewatchCollector(broken)
    registry = build_registry(collector)
    s = samples_of(registry)
    assert s[("queuewatch_up", ())] == 0 and s[("queuewatch_scrape_errors_total", ())] == 1
    assert collector.last_error == "KeyError: 'items'"


def test_all_vhosts_marks_only_the_orphan_of_its_own_vhost():
    qs = tuple(parse_queue({"name": "jobs", "vhost": v, "messages_ready": 3,
                            "messages_unacknowledged": 0, "consumers": 0, "arguments": {}}, NOW)
               for v in ("a", "b"))
    snap = Snapshot(taken_at=NOW, vhost=None, broker=BrokerInfo(url="http://x"), queues=qs,
                    orphaned_queues=("a/jobs",))
    s = samples_of(build_registry(QueuewatchCollector(lambda: snap)))
    orphaned = {k[1] for k in s if k[0] == "queuewatch_queue_orphaned"}
    assert orphaned == {(("queue", "jobs"), ("vhost", "a"))}


def test_a_draining_queue_has_a_finite_eta():
    q = parse_queue({"name": "jobs", "vhost": "v", "messages_ready": 100,
                     "messages_unacknowledged": 0, "consumers": 1, "arguments": {},
                     "message_stats": {"ack_details": {"rate": 10.0},
                                       "deliver_get_details": {"rate": 10.0}}}, NOW)
    snap = Snapshot(taken_at=NOW, vhost="v", broker=BrokerInfo(url="http://x"), queues=(q,))
    s = samples_of(build_registry(QueuewatchCollector(lambda: snap)))
    assert s[("queuewatch_queue_drain_eta_seconds", (("queue", "jobs"), ("vhost", "v")))] == 10.0
