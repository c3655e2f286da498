"""Cluster-aware monitoring without a broker: down queues, quorum majorities, partitions.

The records below are shaped as RabbitMQ 3.10.8's management API returned them on the
project's 3-node test cluster (``/api/queues?columns=...`` and ``/api/nodes``).
"""

from __future__ import annotations

import json

from queuewatch.cli.cmd_status import render_status
from queuewatch.config import Thresholds
from queuewatch.metrics import QueuewatchCollector, build_registry
from queuewatch.monitor.alerts import build_alerts
from queuewatch.monitor.detect import StallTracker, find_orphaned
from queuewatch.monitor.history import QueueHistory
from queuewatch.monitor.jsonview import snapshot_to_json
from queuewatch.monitor.kinds import KINDS, kind_of, majority
from queuewatch.monitor.model import BrokerInfo, NodeStats, Snapshot
from queuewatch.monitor.queues import MONITOR_QUEUE_COLUMNS, parse_queue
from queuewatch.tui.format import QUEUE_COLUMN_TEXT, fill_text, queue_cell

NOW = 1_700_000_000.0
A, B, C = "qwt-1@localhost", "qwt-2@localhost", "qwt-3@localhost"

#: A classic queue whose node was killed, as another node's API lists it: no counts at all.
CLASSIC_DOWN = {"name": "jobs", "node": B, "state": "down", "type": "classic", "vhost": "v"}


def quorum(online: list[str], **kw: object) -> dict[str, object]:
    """A quorum queue as listed: still "running" with the last counts its leader knew."""
    raw: dict[str, object] = {
        "name": "qq", "vhost": "v", "type": "quorum", "state": "running", "node": A,
        "leader": A, "members": [A, C, B], "online": online, "consumers": 1,
        "messages_ready": 5, "messages_unacknowledged": 0, "head_message_timestamp": NOW - 30,
        "message_stats": {"publish_details": {"rate": 0.0}},
    }
    raw.update(kw)
    return raw


def snap_of(*queues, nodes=(), node: str | None = A) -> Snapshot:  # type: ignore[no-untyped-def]
    qs = tuple(queues)
    return Snapshot(taken_at=NOW, vhost="v", broker=BrokerInfo(url="http://x", node=node),
                    nodes=tuple(nodes), queues=qs,
                    alerts=build_alerts(qs, nodes, [], [], [], find_orphaned(qs), Thresholds()))


def samples(snap: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = build_registry(QueuewatchCollector(lambda: snap))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for m in registry.collect() for s in m.samples}


def test_the_poll_asks_for_where_queues_live():
    assert {"node", "leader", "members", "online"} <= set(MONITOR_QUEUE_COLUMNS)


def test_classic_queue_on_a_stopped_node_is_down_not_empty():
    # Given the record of a classic queue whose node is down
    q = parse_queue(CLASSIC_DOWN, NOW)
    # Then it is down, with depth, lag and ETAs unknown (never 0)
    assert q.down and q.node == B and B in (q.down_reason or "")
    assert q.ready is None and q.unacked is None and q.depth is None
    assert q.oldest_age is None and not q.oldest_age_known
    assert q.drain_eta is None and q.full_eta is None and q.fill is None
    # And nothing calls it an idle backlog or a stall
    assert find_orphaned([q]) == ()
    assert StallTracker(polls=1).update([q], {}) == ()
    # And one critical alert says what to do
    snap = snap_of(q)
    assert [(a.kind, a.severity, a.target) for a in snap.alerts] == [("queue_down", "critical", "jobs")]
    assert f"start node {B} again" in snap.alerts[0].reason


def test_down_queue_in_json_status_console_and_exporter():
    q = parse_queue(dict(CLASSIC_DOWN, arguments={"x-max-length": 100}), NOW)
    snap = snap_of(q)
    # status --json: null counts and ETAs, the verdict and where it lived
    doc = json.loads(json.dumps(snapshot_to_json(snap)))
    jq = doc["queues"][0]
    assert jq["down"] is True and B in jq["down_reason"] and jq["node"] == B
    assert jq["ready"] is None and jq["unacked"] is None and jq["total"] is None
    assert jq["oldest_age_seconds"] is None and jq["drain_eta_seconds"] is None
    assert jq["fill_ratio"] is None and jq["oldest_age_text"] == "unknown"
    # status: DOWN in the ready column and the reason under the table
    text = render_status(snap)
    row = text.splitlines()[2].split()
    assert row[:2] == ["jobs", "DOWN"] and "0s" not in row
    assert f"down: jobs: its node {B} is down" in text
    # console: "down" in the state and ready cells, nothing that reads as empty
    cells = [f(q) for f in QUEUE_COLUMN_TEXT]
    assert cells[2] == "down" and cells[3] == "down" and cells[8] == "?" and cells[9] == "?"
    assert fill_text(q) == "? / 100" and "red" in str(queue_cell(3, q, None).style)
    # exporter: queue_down 1 and no depth samples (unknown, not 0)
    s = samples(snap)
    key = (("queue", "jobs"), ("vhost", "v"))
    assert s[("queuewatch_queue_down", key)] == 1
    assert not any(name == "queuewatch_queue_messages" for name, _ in s)
    assert not any(name == "queuewatch_queue_drain_eta_seconds" for name, _ in s)


def test_quorum_queue_without_a_majority_is_down():
    # Given a quorum queue with one of three members online (the broker still says running)
    q = parse_queue(quorum(online=[A]), NOW)
    # Then it is down with the reason, and its stale counts are not shown
    assert q.down and q.ready is None and q.oldest_age is None and q.drain_eta is None
    assert q.leader == A and q.members == (A, C, B) and q.online == (A,)
    assert "fewer than a majority" in (q.down_reason or "") and "1 of 3" in (q.down_reason or "")
    (alert,) = snap_of(q).alerts
    assert alert.kind == "queue_down" and alert.severity == "critical"
    assert "fewer than a majority of its members online" in alert.reason
    assert f"({C}, {B})" in alert.reason and alert.value == 1 and alert.threshold == 2
    s = samples(snap_of(q))
    key = (("queue", "qq"), ("vhost", "v"))
    assert s[("queuewatch_queue_down", key)] == 1
    assert s[("queuewatch_queue_members", key)] == 3 and s[("queuewatch_queue_members_online", key)] == 1


def test_quorum_queue_with_a_majority_serves_and_warns():
    # Given two of three members online
    q = parse_queue(quorum(online=[A, C]), NOW)
    # Then it is up with its numbers, and a warning names the member that is gone
    assert not q.down and q.ready == 5 and q.oldest_age == 30
    (alert,) = snap_of(q).alerts
    assert (alert.kind, alert.severity) == ("members_offline", "warning")
    assert "2 of 3 members online" in alert.reason and f"bring {B} back" in alert.reason
    s = samples(snap_of(q))
    key = (("queue", "qq"), ("vhost", "v"))
    assert ("queuewatch_queue_down", key) not in s and s[("queuewatch_queue_members_online", key)] == 2
    # And with every member online there is nothing to say
    assert snap_of(parse_queue(quorum(online=[A, B, C]), NOW)).alerts == ()


def test_partition_is_one_critical_alert_and_a_metric_per_node():
    # Given node A partitioned from B and C, as each reports it
    nodes = (NodeStats(A, running=True, partitions=(B, C)),
             NodeStats(B, running=False, partitions=(A,)),
             NodeStats(C, running=False, partitions=(A,)))
    snap = snap_of(nodes=nodes)
    # Then one partition alert (A's view covers B's and C's), critical and actionable
    parts = [a for a in snap.alerts if a.kind == "partition"]
    assert [(a.severity, a.target) for a in parts] == [("critical", A)]
    assert B in parts[0].reason and C in parts[0].reason and "stop_app" in parts[0].reason
    # And a node the answering one cannot see is "down or cut off", not plainly down
    downs = [a for a in snap.alerts if a.kind == "node_down"]
    assert {a.target for a in downs} == {B, C} and all("network partition" in a.reason for a in downs)
    # And each node's count is exported, and status names the partition
    s = samples(snap)
    assert s[("queuewatch_node_partitions", (("node", A),))] == 2
    assert s[("queuewatch_node_partitions", (("node", B),))] == 1
    text = render_status(snap)
    assert f"{A}: up PARTITIONED from {B},{C}" in text and f"(as seen from {A})" in text
    # And without partitions there is no such alert, and the metric says 0
    calm = snap_of(nodes=(NodeStats(A, running=True),))
    assert calm.alerts == () and samples(calm)[("queuewatch_node_partitions", (("node", A),))] == 0


def test_kinds_policy_stream_keeps_messages():
    assert majority(3) == 2 and majority(5) == 3 and majority(1) == 1
    assert not KINDS["classic"].replicated and KINDS["quorum"].replicated
    assert kind_of("some-future-type").drains
    # Given a stream with retained messages and no consumer
    s = parse_queue({"name": "events", "vhost": "v", "type": "stream", "state": "running",
                     "messages_ready": 1000, "members": [A, B, C], "online": [A, B, C],
                     "leader": A}, NOW)
    # Then no drain ETA and no "backlog without consumers": a stream keeps what it holds
    assert not s.down and s.ready == 1000 and s.drain_eta is None
    assert find_orphaned([s]) == () and snap_of(s).alerts == ()


def test_history_keeps_no_points_while_down_and_remembers_the_queue():
    h = QueueHistory(size=5)
    up = parse_queue(quorum(online=[A, B, C]), NOW)
    h.record(NOW, [up])
    h.record(NOW + 5, [parse_queue(quorum(online=[A]), NOW)])
    h.record(NOW + 10, [up])
    assert h.totals("qq") == [5, 5]
