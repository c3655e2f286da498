"""The Grafana dashboard in grafana/: every panel's query, run by a real Prometheus that
scrapes a real exporter over a vhost with the situations the panels show, returns data —
no panel is left empty or broken (a typo in a metric or label returns nothing, a syntax
error returns an error; both fail here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import aio_pika
import httpx
import pytest

from queuewatch.metrics import Exporter
from queuewatch.telemetry import Heartbeat, InFlightJob, heartbeat_routing_key

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "queuewatch-dashboard.json"
PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.prometheus, pytest.mark.timeout(180),
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus server not installed (Debian: "
                       "apt-get install prometheus)"),
]


def panel_queries(vhost: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, variables filled in."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            out.append((panel["title"], target["expr"].replace("$vhost", vhost)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(connection, settings, vhost: str) -> None:  # type: ignore[no-untyped-def]
    """A full capped queue with a DLQ holding dead letters, timestamps (lag), a queue with
    messages and no consumer (orphaned), and a drained one."""
    ch = await connection.channel()
    await ch.declare_queue("emails", durable=True)
    await ch.declare_queue("orders.dlq", durable=True)
    await ch.declare_queue("orders", durable=True, arguments={
        "x-max-length": 3, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders.dlq"})
    for name, n in (("orders", 3), ("orders.dlq", 2)):
        for _ in range(n):
            await ch.default_exchange.publish(
                aio_pika.Message(b"{}", timestamp=time.time() - 60), name)


async def beat(connection, settings, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    """A worker 'w1' running a job of 'orders' for 1,000 s (stuck), beating every 0.5 s."""
    ch = await connection.channel()
    exchange = await ch.get_exchange(settings.telemetry_exchange)
    job = InFlightJob("j-1", "orders", 1, time.time() - 1000)
    while not stop.is_set():
        hb = Heartbeat("w1", "host1", 7, time.time(), ("orders",), 1, 5.0, 1 << 20,
                       in_flight=(job,))
        await exchange.publish(aio_pika.Message(hb.to_json()), heartbeat_routing_key("w1"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def test_every_panel_query_returns_data(connection, mgmt, settings, vhost, tmp_path):
    queries = panel_queries(vhost)
    assert len({title for title, _ in queries}) >= 12
    # Given the situations the panels show, an exporter, and Prometheus scraping it each second
    await seed(connection, settings, vhost)
    stop = asyncio.Event()
    with Exporter(settings, heartbeats=True, max_age=1) as exporter:
        beats = asyncio.create_task(beat(connection, settings, stop))
        port = exporter.start(0)
        web = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: queuewatch\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{port}']\n")
        assert PROMETHEUS is not None
        log = (tmp_path / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
        empty: dict[str, str] = {}
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web}", timeout=5) as http:

                async def all_answer() -> bool:
                    """Every panel has data from at least one of its queries (a sparse
                    series, such as stalled queues, may be absent beside the others)."""
                    if proc.poll() is not None:
                        raise AssertionError((tmp_path / "prometheus.log").read_text()[-2000:])
                    empty.clear()
                    answered: set[str] = set()
                    for title, expr in queries:
                        try:
                            r = await http.get("/api/v1/query", params={"query": expr})
                        except httpx.TransportError:
                            empty[title] = "prometheus not up yet"
                            continue
                        if "json" not in r.headers.get("content-type", ""):
                            empty[title] = f"prometheus not ready ({r.status_code})"
                            continue
                        body = r.json()
                        # Then no query is broken ...
                        assert body.get("status") == "success", (title, expr, body)
                        if body["data"]["result"]:
                            answered.add(title)
                        else:
                            empty.setdefault(title, expr)
                    for title in answered:
                        empty.pop(title, None)
                    return not empty

                # ... and every one returns data (the report below names those that do not)
                deadline = time.monotonic() + 90
                while not await all_answer() and time.monotonic() < deadline:
                    await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(beats, return_exceptions=True)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    assert not empty, f"panels without data: {empty}"
