"""The job events stream on a 3-node cluster: when the node leading the stream dies, jobs go
on (a record waits at most ``events_hold``) and, once the stream has a new leader, every
confirmed job's history is complete: accepted, started and succeeded, nothing lost.

Ledgers of job ids for the jobs; for the events, the status of every confirmed job read back
from the stream. Liveness: the time from the kill to the next confirm and the next job done.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from queuewatch.broker.connect import connect_one
from queuewatch.broker.management import ManagementClient, q
from queuewatch.config import Settings
from queuewatch.events.model import stream_arguments
from queuewatch.jobs import Jobs, JobState
from queuewatch.topology import QueueSpec
from tests.cluster import Cluster
from tests.integration.test_cluster_failover import Run, run_with_fault

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

#: The events hold of this test: a record waits at most this long for the stream.
HOLD = 3.0
RESUME_WITHIN = 10.0


def leader_of(cluster: Cluster, via: int, vhost: str, name: str, timeout: float = 30.0) -> str:
    """The node leading queue or stream ``name`` (once the management API has its stats)."""
    node = cluster.nodes[via]
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(f"{node.management_url}/api/queues/{q(vhost)}/{q(name)}")
        req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest, a test node
        with urllib.request.urlopen(req, timeout=10) as resp:
            info = json.load(resp)
        leader = info.get("leader") or info.get("node")
        if leader in cluster.names:
            return str(leader)
        if time.monotonic() > deadline:
            raise AssertionError(f"no leader shown for {name!r} within {timeout:g}s: {info}")
        time.sleep(1.0)


async def declare_through(settings: Settings, address: str, name: str,
                          arguments: dict[str, object]) -> None:
    """Declare ``name`` through the node at ``address`` (its leader is placed there)."""
    conn = await connect_one(settings, address)
    try:
        channel = await conn.channel()
        await channel.declare_queue(name, durable=True, arguments=arguments)  # type: ignore[arg-type]
    finally:
        await conn.close()


@pytest.mark.parametrize("events_on", [2, 0], ids=["leader-elsewhere", "leader-on-clients-node"])
async def test_kill9_of_the_events_stream_leader(cluster: Cluster, tmp_path: Path,
                                                 events_on: int) -> None:
    # Given a vhost of its own on the cluster, a quorum job queue led by node 1 and the
    # job events stream declared through node ``events_on`` (its leader there); a producer
    # and a worker whose first address is node 0, recording every job's events
    vhost = f"qwt-cluster-events-{secrets.token_hex(4)}"
    async with ManagementClient(cluster.settings(via=0)) as m:
        await m.create_vhost(vhost)
        await m.set_permissions(vhost, "guest")
    settings = replace(cluster.settings(vhost, heartbeat=5, events_hold=HOLD),
                       state_dir=tmp_path / "state")
    spec = QueueSpec("jobs-ev", queue_type="quorum", max_priority=0, dlq=False)
    await declare_through(settings, cluster.amqp_urls[1], spec.name, spec.arguments())
    await declare_through(settings, cluster.amqp_urls[events_on], settings.events_stream,
                          stream_arguments(settings.events_max_age, settings.events_max_bytes))
    leader = leader_of(cluster, 1, vhost, settings.events_stream)
    victim = cluster.names.index(leader)
    if victim == 1:  # the job queue's leader: that fault is test_cluster_failover's
        pytest.skip("the events stream's leader landed on the job queue's node")
    run = Run(settings, spec)
    # When the stream's leader is killed with SIGKILL mid-stream
    p, w = await run_with_fault(run, lambda: cluster.kill9(victim), after=15.0)
    summary = run.ledger.summary()
    moved_to = leader_of(cluster, 1, vhost, settings.events_stream)
    assert moved_to != leader, f"the stream is still led by the killed node {leader}"
    # Then jobs went on: both resumed within 10 s, no confirmed job lost
    assert summary["lost"] == 0, summary
    assert p < RESUME_WITHIN and w < RESUME_WITHIN, (p, w)
    # And every confirmed job's history reaches the stream: accepted, started, succeeded
    confirmed = sorted(run.ledger.confirmed)
    reader = replace(settings, amqp_urls=tuple(u for i, u in enumerate(cluster.amqp_urls)
                                               if i != victim))
    t0 = time.monotonic()
    incomplete: list[tuple[str, str, list[str]]] = []
    async with Jobs(reader) as jobs:
        deadline = time.monotonic() + 90
        while True:
            await jobs.wait(confirmed[-1], timeout=60)
            incomplete = []
            for job in confirmed:
                st = await jobs.status(job, fresh=False)
                kinds = {e.kind for e in st.events}
                if st.state is not JobState.SUCCEEDED or not {"accepted", "started", "succeeded"} <= kinds:
                    incomplete.append((job, st.state.value, sorted(kinds)))
            if not incomplete or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
    complete_after = time.monotonic() - t0
    print(f"events leader kill ({leader} -> {moved_to}): producer resumed after {p:.2f}s, "
          f"worker after {w:.2f}s; {summary}; {len(confirmed)} histories complete "
          f"{complete_after:.1f}s after the run; incomplete {len(incomplete)}")
    assert not incomplete, (len(incomplete), incomplete[:5])
    assert len(confirmed) > 100, "too few jobs to say anything"
