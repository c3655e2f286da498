"""Why a consumer does not consume, while the link to the broker is down: ``link_down``.

A worker started while RabbitMQ cannot be reached said ``starting`` ("still subscribing")
for as long as the outage lasted; a link lost while a consumer subscribed (again) left it at
``channel_closed: subscribing ... failed`` for the rest of the outage, overwriting the
link's own ``link_down``. The heartbeat and the worker's metrics read these states.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from urllib.parse import urlsplit

import aio_pika

from queuewatch.broker.consumer import NO_LINK, RESUBSCRIBE_POLICY
from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.telemetry import ConsumerStatus
from queuewatch.topology import QueueSpec
from queuewatch.worker import Job, Worker, WorkerObserver
from tests.helpers import declare, wait_until
from tests.proxy import TcpProxy


def _via(settings: Settings, proxy: TcpProxy) -> Settings:
    user, password = settings.credentials
    url = f"amqp://{user}:{password}@127.0.0.1:{proxy.port}/"
    return replace(settings, amqp_url=url, amqp_urls=(), heartbeat=2)


def _broker(settings: Settings) -> tuple[str, int]:
    return "127.0.0.1", urlsplit(settings.amqp_url).port or 5672


class Changes(WorkerObserver):
    """Every consumer state the worker reported, in order."""

    def __init__(self) -> None:
        self.states: list[ConsumerStatus] = []

    def on_consumer_change(self, worker_id: str, state: ConsumerStatus) -> None:
        self.states.append(state)


async def test_a_worker_started_while_the_broker_is_unreachable_says_link_down(
        connection, settings, vhost):
    # Given two job queues and a broker the worker cannot reach when it starts
    topo = await declare(connection, vhost, QueueSpec("jobs"), QueueSpec("mail"), delay_levels=1)
    with TcpProxy(_broker(settings)) as proxy:
        proxy.cut()
        worker = Worker(replace(_via(settings, proxy), job_events=False), topo,
                        idempotency=False, heartbeat_interval=0.5)

        async def handle(job: Job) -> None: ...
        worker.add_handler("jobs", handle)
        worker.add_handler("mail", handle)
        task = asyncio.create_task(worker.run())
        try:
            # When it has tried to connect (it waits, bounded, for the paused queues first)
            await wait_until(lambda: worker.link.last_error is not None, timeout=5,
                             what="a failed connect")
            # Then each consumer says the link is down, not "starting"
            assert {(c.cause, c.reason) for c in worker.consumer_status()} == {
                ("link_down", NO_LINK)}
            # and still once its subscriptions are made, in its metrics too
            await wait_until(lambda: len(worker.subscriptions) == 2, timeout=15,
                             what="the subscriptions made")
            assert {(c.cause, c.reason) for c in worker.consumer_status()} == {
                ("link_down", NO_LINK)}
            assert worker.metrics is not None
            live = worker.metrics.registry.get_sample_value
            assert live("queuewatch_consumer_live", {"queue": "jobs"}) == 0
            # When the broker can be reached again, it consumes, and its heartbeat says so
            proxy.restore()
            await wait_until(worker.connected.is_set, timeout=15, what="consuming")
            beat = worker.heartbeat.build()
            assert [(c.queue, c.live, c.cause) for c in beat.consumers] == [
                ("jobs", True, None), ("mail", True, None)]
            assert live("queuewatch_consumer_live", {"queue": "mail"}) == 1
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)


async def test_a_link_lost_in_the_middle_of_subscribing_says_link_down_until_consuming(
        connection, settings, vhost):
    # Given a consumer kept by a link through a proxy, whose subscribing (its queue
    # declare) cuts the link the second time: the re-subscribe after a reconnect
    channel = await connection.channel()
    await channel.declare_queue("work", durable=True)
    got: list[bytes] = []
    seen: list[tuple[bool, str | None, str | None]] = []

    async def on_message(message) -> None:  # type: ignore[no-untyped-def]
        got.append(message.body)
        await message.ack()

    with TcpProxy(_broker(settings)) as proxy:
        subscribing = 0

        async def declare_work(ch):  # type: ignore[no-untyped-def]
            nonlocal subscribing
            subscribing += 1
            if subscribing == 2:
                proxy.cut()
            return await ch.get_queue("work", ensure=True)

        link = BrokerLink(_via(settings, proxy), name="qwt-resubscribe-cut")
        sub = link.subscribe("work", on_message, prefetch=5, declare=declare_work,
                             on_change=lambda s: seen.append(
                                 (s.state.live, s.state.cause, s.state.reason)))
        try:
            await link.open(10)
            await wait_until(lambda: sub.live, what="first subscription")
            # When the link is lost, comes back, and is lost again while it re-subscribes
            proxy.cut()
            await wait_until(lambda: not link.alive, timeout=5, what="the first cut noticed")
            proxy.restore()
            await wait_until(lambda: subscribing == 2, timeout=10, what="the re-subscribe")
            await asyncio.sleep(1.5)  # (an outage: the interrupted attempt's error lands)
            proxy.restore()
            await wait_until(lambda: sub.live, timeout=15, what="consuming again")
            await channel.default_exchange.publish(aio_pika.Message(b"after"), "work")
            await wait_until(lambda: got == [b"after"], what="a delivery")
            states = list(seen)
        finally:
            await link.close()
    # Then between the two subscriptions it only ever said the link was down, and now it
    # consumes (no "channel_closed: subscribing failed" on the way, none left over)
    assert states[0] == (True, None, None) and states[-1] == (True, None, None)
    assert set(states[1:-1]) == {(False, "link_down", NO_LINK)}


async def test_a_worker_resubscribing_to_a_deleted_queue_says_link_down_while_it_is(
        connection, settings, vhost):
    # Given a worker whose queue was deleted: it tries to subscribe again, with backoff
    topo = await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
    changes = Changes()
    with TcpProxy(_broker(settings)) as proxy:
        worker = Worker(replace(_via(settings, proxy), job_events=False), topo,
                        idempotency=False, metrics=False, observers=[changes])
        worker.link.connect_timeout = 2.0  # (its wait for the link, shorter: a short test)

        @worker.job("jobs")
        async def handle(job: Job) -> None: ...

        task = asyncio.create_task(worker.run())
        try:
            await wait_until(worker.connected.is_set, what="consuming")
            ch = await connection.channel()
            await ch.queue_delete("jobs")
            await wait_until(lambda: worker.consumer_status()[0].cause == "queue_missing",
                             timeout=5, what="queue_missing")
            # When the link goes down for longer than an attempt's wait for it
            proxy.cut()
            await wait_until(lambda: not worker.link.alive, timeout=5, what="the cut noticed")
            mark = len(changes.states)
            await asyncio.sleep(worker.link.connect_timeout + RESUBSCRIBE_POLICY.cap + 1.0)
            during = worker.consumer_status()[0]
            # and comes back, with the queue declared again
            await declare(connection, vhost, QueueSpec("jobs"), delay_levels=1)
            proxy.restore()
            await wait_until(worker.connected.is_set, timeout=15, what="consuming again")
            beat = worker.heartbeat.build()
            after = [(s.live, s.cause) for s in changes.states[mark - 1:]]
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
    # Then while the link was down the consumer said so, and then that it consumes
    assert (during.cause, during.reason) == ("link_down", NO_LINK)
    assert after == [(False, "link_down"), (True, None)]
    assert [(c.live, c.cause) for c in beat.consumers] == [(True, None)]
