"""Cluster metric families: queues that are down, replicated queues' members, partitions.

Built from the same :class:`~queuewatch.monitor.model.Snapshot` as every other family, with
fixed label sets. A queue that is down has no ``queuewatch_queue_messages`` samples (its
depth is unknown, not 0); ``queuewatch_queue_down`` says why they are missing.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from queuewatch.monitor.model import QueueStats, Snapshot

Q_LABELS = ["vhost", "queue"]


def cluster_families(snap: Snapshot, queues: Sequence[QueueStats] | None = None) -> list[Metric]:
    """The families above for ``queues`` (default: every queue of ``snap``)."""
    down = GaugeMetricFamily(
        "queuewatch_queue_down", "1 while the queue cannot serve: its node is down (classic) or "
        "fewer than a majority of its members are online (quorum, stream); absent otherwise",
        labels=Q_LABELS)
    members = GaugeMetricFamily(
        "queuewatch_queue_members", "Members of a replicated queue (quorum, stream)",
        labels=Q_LABELS)
    online = GaugeMetricFamily(
        "queuewatch_queue_members_online", "Members of a replicated queue that are online; it "
        "serves while this is at least floor(members / 2) + 1", labels=Q_LABELS)
    for q in snap.queues if queues is None else queues:
        labels = [q.vhost, q.name]
        if q.down:
            down.add_metric(labels, 1.0)
        if q.members:
            members.add_metric(labels, len(q.members))
            online.add_metric(labels, len(q.online))
    partitions = GaugeMetricFamily(
        "queuewatch_node_partitions", "Nodes this node reports a network partition with "
        "(0 when none)", labels=["node"])
    for n in snap.nodes:
        partitions.add_metric([n.name], len(n.partitions))
    return [down, members, online, partitions]
