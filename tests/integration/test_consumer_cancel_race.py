"""A broker-sent cancel that lands while a subscription is still being made (QA of issue 11).

aiormq's channel reader may handle the broker's ``basic.cancel`` (queue deleted, its node
down) before the coroutine that sent ``basic.consume`` resumes with the ``consume-ok`` that
came just before it: the two frames arrive in one read. Before the fix the subscription then
set itself live after the cancel had been handled: a worker that said "consuming" for good
while the broker showed no consumer on the queue. The test forces that order on the real
broker: the queue is deleted right after the consume is answered, and the subscription goes
on only once the cancel has been handled.
"""

from __future__ import annotations

from typing import Any

import pytest

from queuewatch.broker.link import BrokerLink
from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec
from tests.helpers import consumers, declare, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_a_cancel_handled_before_the_consume_returns(settings, connection, vhost,
                                                           queue_type):
    spec = QueueSpec("jobs", queue_type=queue_type,  # type: ignore[arg-type]
                     max_priority=0 if queue_type == "quorum" else 10)
    topo = await declare(connection, vhost, spec, delay_levels=1)
    link = BrokerLink(settings, name="qwt-cancel-race")
    got: list[Any] = []
    sub = link.subscribe("jobs", got.append)
    consume = sub._consume
    cancelled_early = False

    async def consume_then_cancelled(underlay: Any, queue: str) -> str:
        # The consume is answered, and before this coroutine goes on the broker cancels it
        nonlocal cancelled_early
        tag = await consume(underlay, queue)
        if not cancelled_early:
            cancelled_early = True
            channel = await connection.channel()
            await channel.queue_delete("jobs")
            await channel.close()
            await wait_until(lambda: sub.state.cause == "cancelled_by_broker", timeout=5,
                             interval=0.01, what="the broker's cancel handled")
        return tag

    sub._consume = consume_then_cancelled  # type: ignore[method-assign]
    try:
        await link.open()
        await wait_until(lambda: cancelled_early, timeout=10, what="the first subscribe")
        # When the queue is declared again
        await declare(connection, vhost, spec, delay_levels=1)
        # Then the subscription consumes it again, and says so only when the broker agrees
        async def consuming() -> bool:
            return sub.live and await consumers(connection, "jobs") == 1
        await wait_until(consuming, timeout=10, interval=0.1,
                         what="a consumer on the queue again (the broker's count)")
        async with AsyncProducer(settings, topo) as producer:
            await producer.publish("jobs", {"n": 1}, job_id="after")
        await wait_until(lambda: len(got) == 1, timeout=10, what="the job delivered")
    finally:
        await link.close()
