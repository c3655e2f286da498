"""The sync (pika) producer on a silent network: a black hole (connections stay open, nothing
is forwarded) ends every ``publish`` within ``reconnect_timeout`` with ``BrokerUnavailable``,
never a raw pika error and never a wait without end (also with AMQP heartbeats off); a black
hole shorter than that costs nothing: every publish that returned is in the queue.

Each test publishes through a loopback :class:`~tests.proxy.TcpProxy` on its own vhost.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import pytest

from queuewatch.broker.connect import connect
from queuewatch.config import Settings, load_settings
from queuewatch.errors import BrokerUnavailable
from queuewatch.producer import Producer
from queuewatch.topology import QueueSpec, Topology
from tests.helpers import Ledger, declare, depth, drain
from tests.nodes import Node
from tests.proxy import _CHUNK, TcpProxy

#: A short reconnect_timeout, so a test of "gives up in time" is fast.
RECONNECT_TIMEOUT = 5.0
#: What "within reconnect_timeout" may take on top (a last connect attempt, thread start-up).
SLACK = 3.0
#: The body of the job whose confirm a :class:`HoleAfterPublish` holds back.
HELD = "held-until-the-hole-ends"


class HoleAfterPublish(TcpProxy):
    """A proxy that, once :meth:`arm` ed, black-holes the link right after it forwarded the
    body of the job ``HELD`` to the broker: the message arrives, its confirm is held (a
    silent network during the confirm wait)."""

    armed = False

    def arm(self) -> None:
        self.armed = True

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        to_broker = writer.get_extra_info("peername")[1] == self.target[1]
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            while self.mode == "blackhole":
                await asyncio.sleep(0.05)
            if writer not in self._writers:
                break
            writer.write(data)
            await writer.drain()
            if to_broker and self.armed and HELD.encode() in data:
                self.armed = False
                self.mode = "blackhole"
        writer.transport.abort()


@dataclass
class Timed:
    seconds: float
    value: Any = None
    error: BaseException | None = None


def timed(fn: Callable[[], Any], limit: float) -> Timed:
    """Run ``fn`` in a daemon thread; how long it took and how it ended. Fails the test when it
    has not ended after ``limit`` s (the thread is left behind: closing the proxy ends it)."""
    out: list[Timed] = []
    t0 = time.monotonic()

    def run() -> None:
        try:
            value = fn()
        except BaseException as exc:  # handed to the test as it is
            out.append(Timed(time.monotonic() - t0, error=exc))
        else:
            out.append(Timed(time.monotonic() - t0, value=value))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert out, f"still waiting after {limit:g}s: a wait without end"
    return out[0]


def via(settings: Settings, proxy: TcpProxy, **changes: Any) -> Settings:
    return replace(settings, amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", amqp_urls=(),
                   reconnect_max_delay=0.5, **changes)


def port(settings: Settings) -> int:
    return urlsplit(settings.amqp_url).port or 5672


async def jobs_queue(connection: Any, settings: Settings) -> Topology:
    return await declare(connection, settings.effective_vhost, QueueSpec("jobs"))


def gives_up_in_time(outcome: Timed, limit: float) -> None:
    print(f"ended after {outcome.seconds:.1f}s: {outcome.error or outcome.value!r}")
    assert isinstance(outcome.error, BrokerUnavailable), repr(outcome.error or outcome.value)
    assert outcome.seconds <= limit, f"BrokerUnavailable after {outcome.seconds:.1f}s (> {limit:g}s)"


async def test_a_black_hole_between_publishes_ends_in_broker_unavailable_within_reconnect_timeout(
        settings, connection):  # type: ignore[no-untyped-def]
    topo = await jobs_queue(connection, settings)
    with TcpProxy(("127.0.0.1", port(settings))) as proxy:
        producer = Producer(via(settings, proxy), topo, reconnect_timeout=RECONNECT_TIMEOUT)
        await asyncio.to_thread(producer.connect)
        await asyncio.to_thread(producer.publish, "jobs", {"n": 0}, job_id="before")
        # Given the network goes silent between two publishes (and stays so)
        proxy.blackhole()
        # When the producer publishes
        outcome = await asyncio.to_thread(
            timed, lambda: producer.publish("jobs", {"n": 1}, job_id="in-the-hole"), 60)
        # Then it gives up with BrokerUnavailable within reconnect_timeout, not a pika error
        gives_up_in_time(outcome, RECONNECT_TIMEOUT + SLACK)
        # and, the network back, the same producer publishes again
        proxy.restore()
        await asyncio.to_thread(producer.publish, "jobs", {"n": 2}, job_id="after")
        closed = await asyncio.to_thread(timed, producer.close, 10)
        assert closed.error is None
    got = {m.message_id for m in await drain(connection, "jobs", 3, timeout=3)}
    assert {"before", "after"} <= got


@pytest.mark.parametrize("heartbeat", [0, 10, 600])
async def test_a_black_hole_during_the_confirm_wait_ends_in_broker_unavailable(
        settings, connection, heartbeat):  # type: ignore[no-untyped-def]
    # (heartbeat 0: pika never notices a silent link by itself; 600: not within the test)
    topo = await jobs_queue(connection, settings)
    with HoleAfterPublish(("127.0.0.1", port(settings))) as proxy:
        s = via(settings, proxy, heartbeat=heartbeat)
        producer = Producer(s, topo, reconnect_timeout=RECONNECT_TIMEOUT)
        await asyncio.to_thread(producer.connect)
        await asyncio.to_thread(producer.publish, "jobs", {"n": 0}, job_id="before")
        # Given the network goes silent once the publish reached the broker (its confirm held)
        proxy.arm()
        # When the producer waits for that confirm
        outcome = await asyncio.to_thread(
            timed, lambda: producer.publish("jobs", HELD, job_id="held"), 60)
        assert proxy.mode == "blackhole"
        # Then the wait ends with BrokerUnavailable within reconnect_timeout
        gives_up_in_time(outcome, RECONNECT_TIMEOUT + SLACK)
        # and closing the producer in the black hole does not hang either
        closed = await asyncio.to_thread(timed, producer.close, 10)
        assert closed.error is None and closed.seconds < 5, closed
        proxy.restore()
    # The held job did reach the queue (the outcome said it may have): nothing was lost
    got = {m.message_id for m in await drain(connection, "jobs", 2, timeout=3)}
    assert got == {"before", "held"}


async def test_a_long_black_hole_at_connect_ends_in_broker_unavailable(settings, connection):  # type: ignore[no-untyped-def]
    topo = await jobs_queue(connection, settings)
    with TcpProxy(("127.0.0.1", port(settings))) as proxy:
        # Given a network that takes connections and answers nothing (the AMQP handshake hangs)
        proxy.blackhole()
        producer = Producer(via(settings, proxy), topo, reconnect_timeout=RECONNECT_TIMEOUT)
        # When the producer connects
        outcome = await asyncio.to_thread(timed, producer.connect, 60)
        # Then BrokerUnavailable within reconnect_timeout (pika's own handshake timeout: 15 s)
        gives_up_in_time(outcome, RECONNECT_TIMEOUT + SLACK)
        await asyncio.to_thread(producer.close)


async def test_a_black_hole_shorter_than_reconnect_timeout_loses_nothing(settings, connection):  # type: ignore[no-untyped-def]
    topo = await jobs_queue(connection, settings)
    ledger = Ledger()
    failures: list[BaseException] = []
    stop = threading.Event()
    with TcpProxy(("127.0.0.1", port(settings))) as proxy:
        producer = Producer(via(settings, proxy), topo, reconnect_timeout=10.0)

        def publish_until_stopped() -> None:
            i = 0
            while not stop.is_set():
                job_id = f"j-{i}"
                ledger.sent.add(job_id)
                try:
                    producer.publish("jobs", {"i": i}, job_id=job_id)
                except Exception as exc:  # counted: the test says which
                    failures.append(exc)
                else:
                    ledger.confirmed.add(job_id)
                i += 1
                time.sleep(0.02)

        await asyncio.to_thread(producer.connect)
        publisher = threading.Thread(target=publish_until_stopped, daemon=True)
        publisher.start()
        await asyncio.sleep(1.0)
        before = len(ledger.confirmed)
        # Given the network goes silent for 3 s (less than reconnect_timeout) while publishing
        proxy.blackhole()
        await asyncio.sleep(3.0)
        stuck = len(ledger.confirmed)
        proxy.restore()
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.to_thread(publisher.join, 20)
        assert not publisher.is_alive()
        await asyncio.to_thread(producer.close)
    # Then no publish failed, publishing went on after the hole, and nothing confirmed is lost
    assert not failures, failures
    assert before > 10 and len(ledger.confirmed) > stuck + 10
    ledger.record_received(m.message_id for m in await drain(
        connection, "jobs", len(ledger.sent) + 10, timeout=3))
    summary = ledger.summary()
    assert summary["lost"] == 0 and summary["unexpected"] == 0, summary
    assert await depth(connection, "jobs") == 0


async def test_with_the_outbox_a_black_hole_spools_in_seconds_and_sends_after(
        settings, connection, tmp_path):  # type: ignore[no-untyped-def]
    topo = await jobs_queue(connection, settings)
    with TcpProxy(("127.0.0.1", port(settings))) as proxy:
        producer = Producer(via(settings, proxy, outbox_dir=tmp_path / "outbox"), topo,
                            reconnect_timeout=RECONNECT_TIMEOUT)
        await asyncio.to_thread(producer.connect)
        await asyncio.to_thread(producer.publish, "jobs", {"n": 0}, job_id="o-0")
        # Given the network goes silent
        proxy.blackhole()
        # When the producer publishes, Then each job is spooled within seconds
        for i in range(1, 4):
            outcome = await asyncio.to_thread(
                timed, lambda i=i: producer.publish("jobs", {"n": i}, job_id=f"o-{i}"), 60)
            print(f"publish {i} ended after {outcome.seconds:.1f}s: {outcome.error or outcome.value!r}")
            assert outcome.error is None, repr(outcome.error)
            assert outcome.value.spooled and outcome.seconds < 4, outcome
        # and once the network is back, closing sends what was spooled
        proxy.restore()
        await asyncio.to_thread(producer.close)
        assert producer.outbox is not None and producer.outbox.depth == 0
    got = [m.message_id for m in await drain(connection, "jobs", 10, timeout=3)]
    assert set(got) == {f"o-{i}" for i in range(4)}, got


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_publish_held_by_a_memory_alarm_waits_past_its_deadline(throwaway_node: Node) -> None:
    # (a blocked broker holds confirms on purpose: that is not a silent link)
    settings = replace(load_settings(env={}), amqp_url=throwaway_node.amqp_url, vhost="/",
                       job_events=False)
    conn = await connect(settings)
    topo = await declare(conn, "/", QueueSpec("jobs"), delay_levels=1)
    producer = Producer(settings, topo, reconnect_timeout=2.0)
    await asyncio.to_thread(producer.connect)
    await asyncio.to_thread(producer.publish, "jobs", {}, job_id="before")
    # Given a memory alarm: the broker blocks every publishing connection
    await asyncio.to_thread(throwaway_node.ctl, "set_vm_memory_high_watermark", "0")
    try:
        # When the producer publishes, Then it waits, past reconnect_timeout, for the alarm
        waiting = asyncio.ensure_future(asyncio.to_thread(
            timed, lambda: producer.publish("jobs", {}, job_id="held"), 120))
        await asyncio.sleep(2.0 + 2 * SLACK)
        assert not waiting.done(), waiting.result()
    finally:
        await asyncio.to_thread(throwaway_node.ctl, "set_vm_memory_high_watermark", "0.4")
    # and is confirmed once it clears
    outcome = await waiting
    assert outcome.error is None and outcome.value.job_id == "held", outcome
    assert producer.blocked is False
    await asyncio.to_thread(producer.close)
    got = [m.message_id for m in await drain(conn, "jobs", 5, timeout=3)]
    await conn.close()
    assert sorted(got) == ["before", "held"], got
