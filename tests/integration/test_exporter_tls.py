"""The exporter locked down with a web-config file: TLS with certificates made in the test,
basic auth with a bcrypt hash; scraped by httpx and by a real Prometheus; a wrong password
gets 401. The worker's metrics endpoint takes the same file."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import bcrypt
import httpx
import pytest

from queuewatch.metrics import Exporter
from queuewatch.webconfig import WebConfig
from queuewatch.worker.metrics import PrometheusObserver
from tests.helpers import wait_until
from tests.nodes import free_port
from tests.tls import make_ca, make_cert

PROMETHEUS = shutil.which("prometheus")
PASSWORD = "scrape-S3cr3t"


@pytest.fixture(scope="module")
def web_config(tmp_path_factory) -> tuple[Path, Path]:
    """(web-config file, CA certificate) for a TLS endpoint with one user, 'prom'."""
    d = tmp_path_factory.mktemp("web")
    ca = make_ca(d)
    server = make_cert(d, ca, "server")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    cfg = d / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: {server.cert.name}\n  key_file: {server.key.name}\n"
                   f"basic_auth_users:\n  prom: '{hashed}'\n")
    return cfg, ca.cert


def _check_endpoint(port: int, ca: Path, path: str = "/metrics") -> str:
    url = f"https://127.0.0.1:{port}{path}"
    verify = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=verify, timeout=30) as client:
        missing = client.get(url)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Basic realm=")
        assert client.get(url, auth=("prom", "wrong")).status_code == 401
        assert client.get(url, auth=("other", PASSWORD)).status_code == 401
        ok = client.get(url, auth=("prom", PASSWORD))
        assert ok.status_code == 200, ok.text
    # plain HTTP to the TLS port gets no metrics
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}{path}", auth=("prom", PASSWORD), timeout=10)
    # and a client that does not trust the CA refuses the server
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, auth=("prom", PASSWORD), timeout=10)
    return ok.text


def test_exporter_serves_tls_with_basic_auth(settings, web_config):
    cfg, ca = web_config
    with Exporter(replace(settings, web_config=cfg), heartbeats=False, max_age=1) as exporter:
        port = exporter.start(0)
        text = _check_endpoint(port, ca)
    assert "queuewatch_up" in text


def test_worker_metrics_endpoint_takes_the_same_file(web_config):
    cfg, ca = web_config
    observer = PrometheusObserver()
    port = observer.serve(0, web=WebConfig.load(cfg))
    try:
        _check_endpoint(port, ca)
    finally:
        observer.close()


@pytest.mark.prometheus
@pytest.mark.timeout(180)
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus server not installed (Debian: "
                    "apt-get install prometheus)")
async def test_real_prometheus_scrapes_over_tls_with_basic_auth(settings, web_config, tmp_path):
    cfg, ca = web_config
    with Exporter(replace(settings, web_config=cfg), heartbeats=False, max_age=1) as exporter:
        port = exporter.start(0)
        web = free_port()
        config = tmp_path / "prometheus.yml"
        job = ("  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n"
               "    basic_auth:\n      username: prom\n      password: {pw}\n"
               "    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
        config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                          + job.format(name="right", ca=ca, pw=PASSWORD, port=port)
                          + job.format(name="wrong", ca=ca, pw="not-it", port=port))
        assert PROMETHEUS is not None
        log = (tmp_path / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            seen: dict[str, str] = {}

            async def both_jobs_scraped() -> bool:
                if proc.poll() is not None:
                    raise AssertionError((tmp_path / "prometheus.log").read_text()[-2000:])
                try:
                    async with httpx.AsyncClient() as client:
                        r = await client.get(f"http://127.0.0.1:{web}/api/v1/query",
                                             params={"query": "up"}, timeout=5)
                except httpx.TransportError:
                    return False
                if r.status_code != 200:  # still starting: "Service Unavailable", not JSON
                    return False
                for item in r.json().get("data", {}).get("result", []):
                    seen[item["metric"]["job"]] = item["value"][1]
                return {"right", "wrong"} <= set(seen)

            await wait_until(both_jobs_scraped, timeout=90, interval=0.5,
                             what="Prometheus to scrape both jobs")
            # Then the right password scrapes (up 1) and the wrong one is refused (up 0)
            assert seen == {"right": "1", "wrong": "0"}, seen
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{web}/api/v1/query",
                                     params={"query": 'queuewatch_up{job="right"}'}, timeout=5)
            assert r.json()["data"]["result"][0]["value"][1] == "1"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
