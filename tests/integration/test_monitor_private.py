"""The monitor leaves out queuewatch's private queues (a worker's control queue, a
listener's heartbeat queue): one per process, gone with it, plumbing rather than work."""

from __future__ import annotations

from queuewatch.monitor import Monitor
from queuewatch.monitor.heartbeats import AmqpHeartbeatSource
from queuewatch.telemetry import CONTROL_QUEUE_PREFIX, LISTENER_QUEUE_PREFIX
from queuewatch.topology import QueueSpec
from tests.helpers import declare, wait_until


async def test_private_queues_exist_but_are_not_reported(connection, mgmt, settings, vhost):
    # Given a job queue, a worker's control queue and this monitor's own heartbeat listener
    await declare(connection, vhost, QueueSpec("jobs"))
    channel = await connection.channel()
    await channel.declare_queue(CONTROL_QUEUE_PREFIX + "w1", exclusive=True, auto_delete=True)
    listener = AmqpHeartbeatSource(connection, settings.telemetry_exchange)
    await listener.start()

    async def private_ones_exist() -> bool:
        names = {r["name"] for r in await mgmt.queues(vhost, columns=("name",))}
        return {CONTROL_QUEUE_PREFIX + "w1"} <= names and any(
            n.startswith(LISTENER_QUEUE_PREFIX) for n in names)

    await wait_until(private_ones_exist, what="the private queues in the management API")
    # When the monitor polls
    snap = await Monitor(mgmt, settings, heartbeats=listener).poll()
    # Then it reports the job queues and none of the private ones
    names = {qs.name for qs in snap.queues}
    assert "jobs" in names
    assert not [n for n in names if n.startswith((CONTROL_QUEUE_PREFIX, LISTENER_QUEUE_PREFIX))]
    await listener.stop()
    await channel.close()
