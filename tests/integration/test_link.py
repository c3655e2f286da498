"""BrokerLink on the real broker, through a loopback TCP proxy: it notices a dead link at
once (cut) or within the heartbeat grace (black hole), fails over along its addresses,
brings its consumers back, spreads a fleet's reconnects, and never waits without a bound."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import pytest

from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.errors import AuthenticationFailed, BrokerUnavailable
from tests.helpers import wait_until
from tests.proxy import TcpProxy

QUEUEWATCH = str(Path(sys.executable).parent / "queuewatch")


def _via(settings: Settings, *ports: int, heartbeat: int | None = None) -> Settings:
    user, password = settings.credentials
    urls = tuple(f"amqp://{user}:{password}@127.0.0.1:{p}/" for p in ports)
    out = replace(settings, amqp_urls=urls, amqp_url=urls[0])
    return replace(out, heartbeat=heartbeat) if heartbeat is not None else out


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: nothing listens


def _broker_port(settings: Settings) -> int:
    return urlsplit(settings.amqp_url).port or 5672


async def test_cut_is_noticed_at_once_and_consumers_come_back(settings, connection):
    # Given a link through a proxy, consuming a queue
    channel = await connection.channel()
    await channel.declare_queue("work")
    got: list[bytes] = []

    async def on_message(message):  # type: ignore[no-untyped-def]
        got.append(message.body)
        await message.ack()

    with TcpProxy(("127.0.0.1", _broker_port(settings))) as proxy:
        link = BrokerLink(_via(settings, proxy.port), name="qwt-link-cut")
        sub = link.subscribe("work", on_message, prefetch=5)
        await link.open(10)
        await wait_until(lambda: sub.live, what="first subscription")
        # When the link is cut (a reset: aio-pika's is_closed stays False here)
        proxy.cut()
        t0 = time.monotonic()
        await wait_until(lambda: not link.alive, timeout=5, what="the link to notice the cut")
        noticed = time.monotonic() - t0
        assert sub.state.cause == "link_down"
        proxy.restore()
        # Then it reconnects and the consumer works again, without anyone asking
        await wait_until(lambda: sub.live, timeout=10, what="the consumer to come back")
        await channel.default_exchange.publish(aio_pika.Message(b"after"), "work")
        await wait_until(lambda: got == [b"after"], what="a delivery after the reconnect")
        assert noticed < 2.0 and link.connects == 2 and sub.subscribes == 2
        await link.close()


async def test_a_silent_link_is_declared_dead_within_the_heartbeat_grace(settings):
    with TcpProxy(("127.0.0.1", _broker_port(settings))) as proxy:
        link = BrokerLink(_via(settings, proxy.port, heartbeat=2), name="qwt-link-blackhole")
        await link.open(10)
        # When the network goes silent (no reset, no bytes)
        proxy.blackhole()
        t0 = time.monotonic()
        await wait_until(lambda: not link.alive, timeout=20, what="the silent link to be declared dead")
        silent_for = time.monotonic() - t0
        proxy.restore()
        await link.ensure(15)
        await link.close()
    # aiormq allows three missed heartbeats ((2 + 1) * 3 = 9 s) before it gives up
    assert silent_for < 12


async def test_failover_along_the_address_list(settings):
    # Given a dead first address and a live second one
    with TcpProxy(("127.0.0.1", _broker_port(settings))) as proxy:
        link = BrokerLink(_via(settings, _closed_port(), proxy.port), name="qwt-link-failover")
        conn = await link.open(10)
        assert conn is link.connection and f":{proxy.port}/" in str(link.address)
        # The address that worked is tried first after a loss (no detour to the dead one)
        attempts_before = len(link.attempts)
        proxy.cut()
        proxy.restore()
        await wait_until(lambda: link.connects == 2, timeout=10, what="reconnect")
        assert len(link.attempts) == attempts_before + 1
        await link.close()


async def test_a_fleet_reconnects_spread_in_time(settings):
    # Given ten clients on the same broker link
    with TcpProxy(("127.0.0.1", _broker_port(settings))) as proxy:
        links = [BrokerLink(_via(settings, proxy.port), name=f"qwt-fleet-{i}") for i in range(10)]
        await asyncio.gather(*(link.open(10) for link in links))
        before = [len(link.attempts) for link in links]
        # When they all lose the broker at the same instant
        proxy.cut()
        await asyncio.sleep(0.05)
        proxy.restore()
        await wait_until(lambda: all(link.connects == 2 for link in links), timeout=15,
                         what="every client back")
        # Then their first attempts are spread over the jitter window, not in step
        firsts = sorted(link.attempts[n] for link, n in zip(links, before, strict=True))
        spread = firsts[-1] - firsts[0]
        gaps = [b - a for a, b in itertools.pairwise(firsts)]
        await asyncio.gather(*(link.close() for link in links))
    assert spread > 0.08, firsts
    assert statistics.pstdev(firsts) > 0.03
    assert sum(1 for g in gaps if g < 0.002) <= 6, gaps  # not one burst (a loaded loop bunches a few)


async def test_every_wait_has_a_deadline_when_no_address_answers(settings):
    urls = tuple(f"amqp://u:Very-Secret-1@127.0.0.1:{_closed_port()}/" for _ in range(2))
    link = BrokerLink(replace(settings, amqp_urls=urls, amqp_url=urls[0]), name="qwt-link-none")
    t0 = time.monotonic()
    with pytest.raises(BrokerUnavailable) as info:
        await link.open(2.0)
    await link.close()
    assert time.monotonic() - t0 < 4
    text = str(info.value)
    assert "\n" not in text and "Very-Secret-1" not in text
    assert len(link.attempts) >= 2  # it kept trying both, with backoff, until the deadline


async def test_refused_credentials_are_said_at_once(settings):
    bad = replace(settings, amqp_url=settings.amqp_url.replace(
        f":{settings.credentials[1]}@", ":wrong-secret@"), amqp_urls=())
    link = BrokerLink(bad, name="qwt-link-auth")
    t0 = time.monotonic()
    with pytest.raises(AuthenticationFailed) as info:
        await link.open(20)
    await link.close()
    assert time.monotonic() - t0 < 5 and "wrong-secret" not in str(info.value)


@pytest.mark.parametrize("urls", [
    "amqp://guest:guest@127.0.0.1:1/,amqp:/",        # one malformed address
    "amqp://guest:S3cr3t/p@127.0.0.1/",               # an unencoded '/' in the password
])
def test_cli_bad_address_list_is_one_line_and_exit_2(urls, vhost):
    proc = subprocess.run([QUEUEWATCH, "dlq", "list", "jobs", "--vhost", vhost, "--amqp-url", urls],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "S3cr3t" not in proc.stderr


def test_cli_all_addresses_down_is_one_line_and_exit_2(vhost):
    urls = f"amqp://guest:guest@127.0.0.1:{_closed_port()}/,amqp://guest:guest@127.0.0.1:{_closed_port()}/"
    proc = subprocess.run([QUEUEWATCH, "dlq", "list", "jobs", "--vhost", vhost, "--amqp-url", urls],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "guest:guest" not in proc.stderr


@pytest.mark.parametrize("command", [["workers"], ["dlq", "list", "jobs"], ["jobs", "stuck"]])
def test_cli_refused_credentials_is_one_line_and_exit_2(command, vhost):
    proc = subprocess.run([QUEUEWATCH, *command, "--vhost", vhost, "--amqp-url",
                           "amqp://guest:Not-The-Password@127.0.0.1:5672/,amqp://guest:x@127.0.0.1:1/"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "Not-The-Password" not in proc.stderr and "refused the credentials" in proc.stderr


async def test_a_connect_that_fails_half_way_leaves_no_connection_open(settings):
    import gc

    from queuewatch.broker.connect import connect_one

    with TcpProxy(("127.0.0.1", _broker_port(settings))) as proxy:
        via = _via(settings, proxy.port)
        proxy.blackhole()  # TCP accepted, the AMQP handshake never answered
        failures = []
        for address, timeout in ((via.amqp_urls[0], 1.0),
                                 (f"amqp://guest:guest@127.0.0.1:{_closed_port()}/", 2.0)):
            # When a connect times out half-way, or is refused
            with pytest.raises(BrokerUnavailable) as failed:
                await connect_one(via, address, timeout=timeout)
            failures.append(failed)  # (its traceback holds what the connect made)
        # Then no connection object is left open (dropped open, aio-pika's __del__ schedules
        # a close nobody awaits: "coroutine 'Connection.close' was never awaited")
        left_open = [o for o in gc.get_objects()
                     if isinstance(o, aio_pika.Connection) and not o.is_closed]
        assert not left_open, left_open
        proxy.restore()
        await asyncio.sleep(0.3)
        assert proxy.open_connections == 0
