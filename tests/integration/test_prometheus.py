"""Prometheus itself: promtool on a live scrape and on alerts.yml, and a real server round trip."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

import aio_pika
import httpx
import pytest

from queuewatch.metrics import Exporter
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.timeout(120),
    pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: apt-get install "
                       "prometheus)"),
]


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(connection, mgmt, vhost: str, queue: str, n: int) -> None:  # type: ignore[no-untyped-def]
    ch = await connection.channel()
    await ch.declare_queue(queue, durable=True, arguments={"x-max-length": 10})
    for _ in range(n):
        await ch.default_exchange.publish(aio_pika.Message(b"x"), queue)

    async def visible() -> bool:
        return ((await mgmt.queue(vhost, queue)) or {}).get("messages_ready") == n

    await wait_until(visible, timeout=20, interval=0.5, what="the messages in the stats")


def test_alert_rules_pass_check_and_unit_tests():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "tests/prometheus/alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


async def test_live_scrape_passes_promtool_check_metrics(connection, mgmt, settings, vhost):
    # Given an exporter over a vhost with a capped queue, a DLQ pair and no timestamps
    await seed(connection, mgmt, vhost, "capped", 4)
    ch = await connection.channel()
    await ch.declare_queue("capped.dlq", durable=True)
    with Exporter(settings, heartbeats=True, max_age=5) as exporter:
        port = exporter.start(0)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=30)).text
    # Then promtool's linter has nothing to say
    assert "queuewatch_queue_fill_ratio" in text and "queuewatch_workers_up" in text
    result = await asyncio.to_thread(promtool, "check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus server not installed (Debian: "
                    "apt-get install prometheus)")
async def test_real_prometheus_scrapes_the_exporter(connection, mgmt, settings, vhost, tmp_path):
    # Given an exporter, and a throwaway Prometheus scraping it every second
    await seed(connection, mgmt, vhost, "roundtrip", 5)
    with Exporter(settings, heartbeats=False, max_age=1) as exporter:
        port = exporter.start(0)
        web = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {ROOT / 'alerts.yml'}\n"
            "scrape_configs:\n  - job_name: queuewatch\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{port}']\n"
        )
        assert PROMETHEUS is not None
        log = (tmp_path / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            query = f'queuewatch_queue_messages{{vhost="{vhost}",queue="roundtrip",state="ready"}}'
            found: list[str] = []

            async def prometheus_has_it() -> bool:
                if proc.poll() is not None:
                    raise AssertionError((tmp_path / "prometheus.log").read_text()[-2000:])
                try:
                    async with httpx.AsyncClient() as client:
                        r = await client.get(f"http://127.0.0.1:{web}/api/v1/query",
                                             params={"query": query}, timeout=5)
                except httpx.TransportError:
                    return False
                result = r.json().get("data", {}).get("result", []) if r.status_code == 200 else []
                if result:
                    found.append(result[0]["value"][1])
                return bool(result)

            started = time.monotonic()
            await wait_until(prometheus_has_it, timeout=60, interval=0.5,
                             what="Prometheus to scrape the exporter")
            # Then Prometheus's query API returns the queue's depth
            assert found[-1] == "5", (found, time.monotonic() - started)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
