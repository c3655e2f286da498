"""Which queues the exporter exports: include/exclude patterns, the cap, and the counts of
what was left out (so a filter never hides queues silently)."""

from __future__ import annotations

from queuewatch.metrics import QueueSelector, QueuewatchCollector, build_registry
from queuewatch.monitor.model import BrokerInfo, Snapshot
from queuewatch.monitor.queues import parse_queue

NOW = 1_700_000_000.0
NAMES = ("orders", "orders.dlq", "emails", "celery", "celery.pidbox", "billing")


def snapshot(vhost: str = "v") -> Snapshot:
    qs = tuple(parse_queue({"name": n, "vhost": vhost, "messages_ready": 1,
                            "messages_unacknowledged": 0, "consumers": 1, "arguments": {}}, NOW)
               for n in NAMES)
    return Snapshot(taken_at=NOW, vhost=vhost, broker=BrokerInfo(url="http://x"), queues=qs)


def exported(selector: QueueSelector, snap: Snapshot) -> tuple[set[str], dict[str, float]]:
    registry = build_registry(QueuewatchCollector(lambda: snap, selector=selector))
    names, left = set(), {}
    for m in registry.collect():
        for s in m.samples:
            if s.name == "queuewatch_queue_consumers":
                names.add(s.labels["queue"])
            if s.name == "queuewatch_queues_not_exported":
                left[s.labels["reason"]] = s.value
    return names, left


def test_everything_is_exported_by_default():
    names, left = exported(QueueSelector(), snapshot())
    assert names == set(NAMES) and left == {"filtered": 0, "cap": 0}


def test_include_then_exclude():
    sel = QueueSelector(include=["orders*", "celery*", "emails"], exclude=["*.pidbox", "*.dlq"])
    names, left = exported(sel, snapshot())
    assert names == {"orders", "celery", "emails"}
    assert left == {"filtered": 3, "cap": 0}


def test_a_pattern_with_a_slash_matches_vhost_and_name():
    assert QueueSelector(include=["prod/orders*"]).wanted("prod", "orders.dlq")
    assert not QueueSelector(include=["prod/orders*"]).wanted("test", "orders")
    assert not QueueSelector(exclude=["test/*"]).wanted("test", "orders")


def test_the_cap_keeps_the_first_queues_by_name_and_counts_the_rest():
    names, left = exported(QueueSelector(exclude=["*.pidbox"], max_queues=2), snapshot())
    # sorted: billing, celery, emails, orders, orders.dlq -> the first two, whatever the order
    assert names == {"billing", "celery"}
    assert left == {"filtered": 1, "cap": 3}


def test_families_are_built_once_per_snapshot():
    snap = snapshot()
    collector = QueuewatchCollector(lambda: snap)
    first = next(m for m in collector.collect() if m.name == "queuewatch_queue_consumers")
    second = next(m for m in collector.collect() if m.name == "queuewatch_queue_consumers")
    assert first is second


def test_lean_mode_leaves_depth_and_consumers_to_rabbitmq_prometheus():
    q = parse_queue({"name": "jobs", "vhost": "v", "messages_ready": 5,
                     "messages_unacknowledged": 0, "consumers": 0,
                     "arguments": {"x-max-length": 10}}, NOW)
    snap = Snapshot(taken_at=NOW, vhost="v", broker=BrokerInfo(url="http://x"), queues=(q,),
                    orphaned_queues=("jobs",))
    full = {m.name for m in QueuewatchCollector(lambda: snap).collect()}
    lean = {m.name for m in QueuewatchCollector(lambda: snap, lean=True).collect()}
    assert full - lean == {"queuewatch_queue_messages", "queuewatch_queue_consumers"}
    # what RabbitMQ lacks stays: fill, orphaned, the cap
    assert {"queuewatch_queue_fill_ratio", "queuewatch_queue_orphaned"} <= lean
