"""The exporter on a real broker: values, snapshot reuse, and surviving a dead management API."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from urllib.parse import urlsplit

import aio_pika
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuewatch.metrics import Exporter
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(90)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    assert resp.status_code == 200
    return samples(resp.text)


class TcpProxy:
    """Forwards a local port to the management API; stopping it makes the API 'go down'."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def publish_and_wait(connection, mgmt, vhost: str, queue: str, n: int) -> None:  # type: ignore[no-untyped-def]
    ch = await connection.channel()
    await ch.declare_queue(queue, durable=True)
    for _ in range(n):
        await ch.default_exchange.publish(aio_pika.Message(b"x"), queue)

    async def visible() -> bool:
        return ((await mgmt.queue(vhost, queue)) or {}).get("messages_ready") == n

    await wait_until(visible, timeout=20, interval=0.5, what=f"{n} messages in the stats")


async def test_scrape_reports_the_queue_and_reuses_the_snapshot(connection, mgmt, settings, vhost):
    # Given a queue with 7 messages, visible in the stats
    await publish_and_wait(connection, mgmt, vhost, "exported", 7)
    exporter = Exporter(settings, heartbeats=False, max_age=60)
    try:
        port = exporter.start(0)
        # When scraped twice in a row
        first = await scrape(port)
        second = await scrape(port)
    finally:
        exporter.close()
    # Then the values are the queue's, and the second scrape reused the first snapshot
    q = (("queue", "exported"), ("vhost", vhost))
    assert first[("queuewatch_up", ())] == 1
    assert first[("queuewatch_queue_messages", (*q[:1], ("state", "ready"), q[1]))] == 7
    assert first[("queuewatch_queue_consumers", q)] == 0
    assert first[("queuewatch_queue_orphaned", q)] == 1
    assert ("queuewatch_queue_oldest_message_age_seconds", q) not in first  # unknown: absent
    assert [v for (name, _), v in first.items() if name == "queuewatch_node_running"] == [1]
    assert exporter.poller.polls == 1
    assert second[("queuewatch_snapshot_timestamp_seconds", ())] == first[
        ("queuewatch_snapshot_timestamp_seconds", ())]


async def test_a_scrape_never_polls_and_says_how_old_its_snapshot_is(connection, mgmt, settings,
                                                                    vhost):
    # Given queues "keep.a", "keep.b", "skip.c" and an exporter that exports keep.* only,
    # polling in the background every 60 s
    for name in ("keep.a", "keep.b", "skip.c"):
        await publish_and_wait(connection, mgmt, vhost, name, 2)
    narrowed = replace(settings, export_include=("keep.*",), export_exclude=("*.b",))
    exporter = Exporter(narrowed, heartbeats=False, max_age=60)
    try:
        port = exporter.start(0)
        # When scraped ten times, 0.2 s apart
        scrapes = []
        for _ in range(10):
            scrapes.append(await scrape(port))
            await asyncio.sleep(0.2)
        polls = exporter.poller.polls
        snap = exporter.poller.last_good()
    finally:
        exporter.close()
    # Then the broker was polled once, by the background poll, not by the scrapes
    assert polls == 1
    # And every scrape says how old the snapshot is, growing as it ages
    ages = [s[("queuewatch_snapshot_age_seconds", ())] for s in scrapes]
    assert ages == sorted(ages) and ages[-1] - ages[0] >= 1.5, ages
    # And only the included, not excluded queues are exported; the others are counted
    last = scrapes[-1]
    queues = {dict(labels)["queue"] for name, labels in last if name == "queuewatch_queue_consumers"}
    assert queues == {"keep.a"}
    # (keep.b, skip.c, and the exporter's own job-events stream when it was made before the
    # poll: it is declared in the background, so sometimes it is and sometimes not)
    assert snap is not None and {"keep.b", "skip.c"} <= {q.name for q in snap.queues}
    filtered = last[("queuewatch_queues_not_exported", (("reason", "filtered"),))]
    assert filtered == len(snap.queues) - 1 >= 2
    assert last[("queuewatch_queues_exported", ())] == 1


async def test_a_slow_poll_never_slows_a_scrape(connection, mgmt, settings, vhost):
    import time

    # Given an exporter polling every 0.2 s whose polls take 2 s each (a broker with very
    # many queues), after its first snapshot
    await publish_and_wait(connection, mgmt, vhost, "slow", 1)
    exporter = Exporter(settings, heartbeats=False, max_age=0.2)
    try:
        port = exporter.start(0)
        await scrape(port)
        monitor = exporter.session.monitor
        real_poll = monitor.poll

        async def slow_poll():  # type: ignore[no-untyped-def]
            await asyncio.sleep(2.0)
            return await real_poll()

        monitor.poll = slow_poll  # type: ignore[method-assign]
        # When scraped for 5 s
        took, polls_before = [], exporter.poller.polls
        end = time.monotonic() + 5
        while time.monotonic() < end:
            started = time.monotonic()
            s = await scrape(port)
            took.append(time.monotonic() - started)
            assert s[("queuewatch_up", ())] == 1
            await asyncio.sleep(0.1)
        polls = exporter.poller.polls - polls_before
    finally:
        exporter.close()
    # Then no scrape waited for a poll (each would take 2 s or more; the margin is for a
    # loaded machine), and polls did not overlap (at most one per 2.2 s)
    assert max(took) < 1.8, took
    assert 1 <= polls <= 3, polls


async def test_exporter_keeps_serving_while_the_api_is_down_and_recovers(settings, vhost):
    # Given an exporter that reaches the management API through a proxy we can stop
    mgmt_url = urlsplit(settings.management_url)
    proxy = TcpProxy(mgmt_url.hostname or "127.0.0.1", mgmt_url.port or 15672)
    await proxy.start()
    proxied = replace(settings, management_url=f"http://127.0.0.1:{proxy.port}", http_timeout=3)
    exporter = Exporter(proxied, heartbeats=False, max_age=0.3)
    try:
        port = exporter.start(0)
        up = await scrape(port)
        assert up[("queuewatch_up", ())] == 1
        assert up[("queuewatch_scrape_errors_total", ())] == 0
        # When the API goes away
        await proxy.stop()
        await asyncio.sleep(0.4)
        down = await scrape(port)
        await asyncio.sleep(0.4)
        still_down = await scrape(port)
        # Then scrapes still answer, with up 0 and the error counter raised
        assert down[("queuewatch_up", ())] == 0
        assert down[("queuewatch_scrape_errors_total", ())] == 1
        assert still_down[("queuewatch_scrape_errors_total", ())] == 2
        assert not any(name == "queuewatch_node_running" for name, _ in down)
        assert exporter.collector.last_error and "management API" in exporter.collector.last_error
        # When it comes back, the exporter recovers by itself (within a few polls: a poll on
        # a loaded machine can take longer than the 0.3 s interval)
        await proxy.start()
        back: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        async def recovered() -> bool:
            back.update(await scrape(port))
            return back[("queuewatch_up", ())] == 1

        await wait_until(recovered, timeout=10, interval=0.2, what="the exporter to recover")
        assert back[("queuewatch_up", ())] == 1
        assert back[("queuewatch_scrape_errors_total", ())] >= 2  # scrapes before it came back
        assert any(name == "queuewatch_node_running" for name, _ in back)
    finally:
        exporter.close()
        with contextlib.suppress(AssertionError):
            await proxy.stop()


async def test_exporter_with_wrong_password_serves_up_zero(settings, vhost):
    bad = replace(settings, management_password="definitely-wrong")
    exporter = Exporter(bad, heartbeats=True, max_age=5)
    try:
        port = exporter.start(0)
        s = await scrape(port)
    finally:
        exporter.close()
    assert s[("queuewatch_up", ())] == 0 and s[("queuewatch_scrape_errors_total", ())] == 1
    assert "refused the credentials" in (exporter.collector.last_error or "")
    assert "definitely-wrong" not in (exporter.collector.last_error or "")


async def test_workers_and_stuck_jobs_from_heartbeats(connection, settings, vhost):
    import time

    from queuewatch.telemetry import Heartbeat, InFlightJob, heartbeat_routing_key

    # Given an exporter listening to heartbeats, and a queue "work"
    ch = await connection.channel()
    await ch.declare_queue("work", durable=True)
    exporter = Exporter(settings, heartbeats=True, max_age=0.2)
    try:
        port = exporter.start(0)
        before = await scrape(port)  # the first poll subscribes to the telemetry exchange
        assert before[("queuewatch_workers_up", ())] == 0
        # When a worker reports a job running for 1000 s
        telemetry = await ch.get_exchange(settings.telemetry_exchange)
        hb = Heartbeat("w1", "host1", 7, time.time(), ("work",), 2, 5.0, 1 << 20,
                       in_flight=(InFlightJob("j-1", "work", 1, time.time() - 1000),))
        await telemetry.publish(aio_pika.Message(hb.to_json()), heartbeat_routing_key("w1"))
        await asyncio.sleep(0.5)
        after = await scrape(port)
    finally:
        exporter.close()
    # Then the worker is up and its job counts as stuck in "work"
    assert after[("queuewatch_workers_up", ())] == 1
    assert after[("queuewatch_worker_in_flight_jobs", (("host", "host1"), ("worker", "w1")))] == 1
    assert after[("queuewatch_stuck_jobs", (("queue", "work"), ("vhost", vhost)))] == 1
    assert after[("queuewatch_stuck_jobs_overall", ())] == 1


@pytest.mark.parametrize(("stop_signal", "code"), [("SIGINT", 130), ("SIGTERM", 0)])
def test_exporter_command_serves_and_stops_on_ctrl_c_or_sigterm(settings, vhost, stop_signal, code):
    import re
    import signal
    import subprocess
    import sys

    # Given `queuewatch exporter` on a free port
    proc = subprocess.Popen(
        [sys.executable, "-m", "queuewatch.cli.main", "exporter", "--port", "0", "--vhost", vhost,
         "--no-heartbeats", "--management-url", settings.management_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert match, line
        # When scraped, it answers with queuewatch_up 1
        text = httpx.get(f"http://127.0.0.1:{match.group(1)}/metrics", timeout=30).text
        assert samples(text)[("queuewatch_up", ())] == 1
        # And Ctrl-C (or SIGTERM) stops it cleanly
        proc.send_signal(getattr(signal, stop_signal))
        assert proc.wait(15) == code, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
