"""The monitor on a real 3-node cluster: a killed node's classic queue, a quorum queue without
its majority, a network partition. Every node is one this module starts (tests/cluster.py);
the monitor polls the management API of a node that stays up."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import aio_pika
import pytest

from queuewatch.broker.management import ManagementClient
from queuewatch.config import Settings
from queuewatch.metrics import QueuewatchCollector, build_registry
from queuewatch.monitor import Monitor, snapshot_to_json
from queuewatch.monitor.model import Snapshot
from tests.cluster import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

#: Seconds for the cluster's view to change (a killed quorum member leaves ``online`` in ~10 s).
SEE_WITHIN = 45.0


def settings_for(cluster: Cluster, via: int, vhost: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Settings that talk to node ``via`` only (so we know whose view we get)."""
    return replace(cluster.settings(vhost, via=via), state_dir=tmp_path / "state")


@pytest.fixture
async def cluster_vhost(cluster: Cluster) -> AsyncIterator[str]:
    """A fresh vhost on the cluster (vhosts are cluster-wide), dropped afterwards."""
    name = f"qwt-cluster-{secrets.token_hex(4)}"
    async with ManagementClient(cluster.settings(via=0)) as m:
        await m.create_vhost(name)
        await m.set_permissions(name, "guest")
    yield name
    for i in range(len(cluster)):
        try:  # any node that is up will do
            async with ManagementClient(cluster.settings(via=i)) as m:
                await m.delete_vhost(name)
            return
        except Exception:
            continue


async def declare_on(cluster: Cluster, node: int, vhost: str, queue: str, n: int,
                     arguments: dict[str, object] | None = None) -> None:
    """Declare ``queue`` through node ``node`` (a classic queue lives there) and put ``n``
    stamped messages in it."""
    url = cluster.amqp_urls[node].rstrip("/") + "/" + vhost
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        await ch.declare_queue(queue, durable=True, arguments=arguments)  # type: ignore[arg-type]
        for i in range(n):
            await ch.default_exchange.publish(
                aio_pika.Message(f"{i}".encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 timestamp=time.time()), queue)
    finally:
        await conn.close()


async def poll_until(monitor: Monitor, check: Callable[[Snapshot], bool], what: str,
                     timeout: float = SEE_WITHIN) -> Snapshot:
    deadline = time.monotonic() + timeout
    snap = await monitor.poll()
    while not check(snap):
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout:g}s: {what}; last snapshot: "
                                 f"{[(q.name, q.state, q.ready, q.online) for q in snap.queues]} "
                                 f"{snap.nodes} {[a.reason for a in snap.alerts]}")
        await asyncio.sleep(1.0)
        snap = await monitor.poll()
    return snap


def kinds(snap: Snapshot) -> set[tuple[str, str]]:
    return {(a.kind, a.target) for a in snap.alerts}


def ready_is(name: str, n: int) -> Callable[[Snapshot], bool]:
    def check(snap: Snapshot) -> bool:
        q = snap.queue(name)
        return q is not None and q.ready == n
    return check


def is_down(name: str) -> Callable[[Snapshot], bool]:
    def check(snap: Snapshot) -> bool:
        q = snap.queue(name)
        return q is not None and q.down
    return check


async def test_killed_node_shows_its_classic_queue_down(cluster: Cluster, cluster_vhost: str, tmp_path):
    # Given a classic queue with 5 messages living on node 2, watched through node 1's API
    await declare_on(cluster, 1, cluster_vhost, "jobs", 5)
    settings = settings_for(cluster, 0, cluster_vhost, tmp_path)
    async with ManagementClient(settings) as mgmt:
        monitor = Monitor(mgmt, settings)
        await poll_until(monitor, ready_is("jobs", 5), "the queue with its 5 messages")
        # When node 2 is killed (kill -9)
        await asyncio.to_thread(cluster.kill9, 1)
        # Then the queue is down, with unknown depth and lag, a critical alert and a metric
        snap = await poll_until(monitor, is_down("jobs"), "the queue down")
        q = snap.queue("jobs")
        assert q is not None and q.node == cluster.names[1] and q.state == "down"
        assert q.ready is None and q.oldest_age is None and q.drain_eta is None
        assert ("queue_down", "jobs") in kinds(snap) and ("node_down", cluster.names[1]) in kinds(snap)
        down = next(a for a in snap.alerts if a.kind == "queue_down")
        assert down.severity == "critical" and f"start node {cluster.names[1]} again" in down.reason
        assert snapshot_to_json(snap)["queues"][0]["ready"] is None
        registry = build_registry(QueuewatchCollector(lambda: snap))
        labels = {"vhost": cluster_vhost, "queue": "jobs"}
        assert registry.get_sample_value("queuewatch_queue_down", labels) == 1
        assert registry.get_sample_value("queuewatch_queue_messages", {**labels, "state": "ready"}) is None
        assert registry.get_sample_value("queuewatch_node_running", {"node": cluster.names[1]}) == 0
        # When the node comes back, so does the queue with its messages
        await asyncio.to_thread(cluster.restart, 1)
        back = await poll_until(monitor, ready_is("jobs", 5), "the queue back with its 5 messages")
        assert not any(a.kind == "queue_down" for a in back.alerts)


async def test_quorum_queue_losing_its_majority(cluster: Cluster, cluster_vhost: str, tmp_path):
    # Given a quorum queue led by node 1, watched through node 1's API
    await declare_on(cluster, 0, cluster_vhost, "qq", 3, {"x-queue-type": "quorum"})
    settings = settings_for(cluster, 0, cluster_vhost, tmp_path)
    async with ManagementClient(settings) as mgmt:
        monitor = Monitor(mgmt, settings)
        snap = await poll_until(monitor, lambda s: bool(s.queues and len(s.queues[0].online) == 3),
                                "three members online")
        q = snap.queues[0]
        assert q.type == "quorum" and set(q.members) == set(cluster.names) and q.leader
        assert not q.down and kinds(snap) == set()
        # When one member's node is killed: it still serves, and a warning names the member
        await asyncio.to_thread(cluster.kill9, 2)
        snap = await poll_until(monitor, lambda s: ("members_offline", "qq") in kinds(s),
                                "the members_offline warning")
        warning = next(a for a in snap.alerts if a.kind == "members_offline")
        assert not snap.queues[0].down and cluster.names[2] in warning.reason
        # When a second one is killed: fewer than a majority online, the queue is down
        await asyncio.to_thread(cluster.kill9, 1)
        snap = await poll_until(monitor, lambda s: ("queue_down", "qq") in kinds(s),
                                "the queue_down alert")
        q = snap.queues[0]
        assert q.down and q.online == (cluster.names[0],) and q.ready is None
        alert = next(a for a in snap.alerts if a.kind == "queue_down")
        assert alert.severity == "critical"
        assert "fewer than a majority of its members online (1 of 3" in alert.reason
        registry = build_registry(QueuewatchCollector(lambda: snap))
        labels = {"vhost": cluster_vhost, "queue": "qq"}
        assert registry.get_sample_value("queuewatch_queue_members_online", labels) == 1
        assert registry.get_sample_value("queuewatch_queue_down", labels) == 1


async def test_partition_raises_a_partition_alert(cluster: Cluster, cluster_vhost: str, tmp_path):
    settings = settings_for(cluster, 1, cluster_vhost, tmp_path)
    async with ManagementClient(settings) as mgmt:
        monitor = Monitor(mgmt, settings)
        # Given a whole cluster as node 2 sees it (a node restarted by an earlier test may
        # take a few polls to show as running there)
        await poll_until(monitor, lambda s: len(s.nodes) == 3 and not any(
            a.kind in ("partition", "node_down") for a in s.alerts), "a whole cluster")
        # When the link between nodes 1 and 3 is cut, then allowed to heal
        await asyncio.to_thread(cluster.partition, 0, 2)
        await asyncio.to_thread(cluster.reconnect)
        # Then the monitor (asking node 2) raises a critical partition alert, and the metric
        snap = await poll_until(monitor, lambda s: any(a.kind == "partition" for a in s.alerts),
                                "the partition alert")
        alert = next(a for a in snap.alerts if a.kind == "partition")
        assert alert.severity == "critical" and "stop_app" in alert.reason
        assert any(n.partitions for n in snap.nodes)
        registry = build_registry(QueuewatchCollector(lambda: snap))
        assert any(registry.get_sample_value("queuewatch_node_partitions", {"node": n}) for n in cluster.names)
        # When the partition is healed (the cut-off side restarted), the alert is gone
        await asyncio.to_thread(cluster.heal)
        await poll_until(monitor, lambda s: not any(a.kind in ("partition", "node_down")
                                                    for a in s.alerts), "no partition alert")
