"""Test helpers for worker liveness: a worker run in-process, a real ``queuewatch worker``
process (stopped by SIGTERM, its stderr and a ledger of job runs kept), and the CLI's view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from queuewatch.worker import Worker
from tests.helpers import drain, wait_until
from tests.nodes import free_port

QUEUEWATCH = str(Path(sys.executable).with_name("queuewatch"))

#: The app a worker process runs: one handler per queue that notes each run's start and end
#: in a ledger file and sleeps ``payload["sleep"]`` seconds in between.
APP = '''
import asyncio, json, os, time
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker import Job, Worker

def make_worker(settings):
    specs = json.loads(os.environ["QWT_SPECS"])
    topology = Topology(queues=tuple(QueueSpec(**s) for s in specs), delay_levels=1)
    worker = Worker(settings, topology, worker_id=os.environ["QWT_WORKER_ID"], concurrency=4,
                    heartbeat_interval=0.5, shutdown_timeout=float(os.environ["QWT_GRACE"]))
    ledger = os.environ["QWT_LEDGER"]

    def note(event, job):
        with open(ledger, "a") as f:
            f.write(json.dumps({"event": event, "job": job.job_id, "at": time.time(),
                                "redelivered": job.redelivered}) + "\\n")

    async def handle(job: Job) -> None:
        note("start", job)
        await asyncio.sleep(float(job.payload.get("sleep", 0)))
        note("done", job)

    for s in specs:
        worker.add_handler(s["name"], handle)
    return worker
'''


async def dead_letters(connection, queue: str, n: int, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    """Take up to ``n`` dead letters of job queue ``queue`` from its ``.dlq``."""
    return await drain(connection, queue + ".dlq", n, timeout)


@contextlib.asynccontextmanager
async def running(worker: Worker, timeout: float = 10.0) -> AsyncIterator[Worker]:
    """Run ``worker`` in this loop until the block ends; fails if it does not consume in time."""
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.connected.is_set() or task.done(), timeout=timeout,
                     what="worker consuming")
    if task.done():
        task.result()
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


@dataclass
class WorkerProcess:
    """``queuewatch worker`` in a subprocess (its own session: signalled by its own pid)."""

    proc: subprocess.Popen[bytes]
    worker_id: str
    ledger: Path
    stderr_path: Path
    metrics_port: int

    def events(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def runs(self, event: str = "start") -> dict[str, list[float]]:
        """Job id -> times of each run's start (or end)."""
        out: dict[str, list[float]] = {}
        for e in self.events():
            if e["event"] == event:
                out.setdefault(e["job"], []).append(e["at"])
        return out

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample from the worker's own /metrics (None when absent or not answering)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM, then wait for the exit code (SIGKILL and fail after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"worker did not exit within {timeout}s of SIGTERM:\n"
                                 f"{self.stderr()[-3000:]}") from None


def start_worker_process(tmp_path: Path, *, amqp_url: str, vhost: str, worker_id: str,
                         specs: Sequence[dict[str, Any]], grace: float = 30.0) -> WorkerProcess:
    """Start ``queuewatch worker`` on the :data:`APP` for ``specs`` (QueueSpec keywords)."""
    app = tmp_path / f"app_{worker_id.replace('-', '_')}.py"
    app.write_text(APP)
    ledger, err = tmp_path / f"{worker_id}.ledger", tmp_path / f"{worker_id}.stderr"
    port = free_port()
    env = dict(os.environ, QWT_SPECS=json.dumps(list(specs)), QWT_WORKER_ID=worker_id,
               QWT_LEDGER=str(ledger), QWT_GRACE=str(grace), XDG_STATE_HOME=str(tmp_path / "state"))
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            # one process: the tests kill -9 this pid and read its heartbeats and metrics
            [QUEUEWATCH, "worker", f"{app}:make_worker", "--processes", "1", "--amqp-url",
             amqp_url, "--vhost", vhost, "--metrics-port", str(port), "-v"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
            start_new_session=True,
        )
    return WorkerProcess(proc, worker_id, ledger, err, port)


async def wait_consuming(wp: WorkerProcess, queue: str, timeout: float = 20.0) -> None:
    await wait_until(lambda: wp.metric("queuewatch_consumer_live", queue=queue) == 1.0,
                     timeout=timeout, interval=0.2, what=f"worker process consuming {queue!r}")


def workers_json(vhost: str, *, amqp_url: str | None = None,
                 management_url: str | None = None) -> list[dict[str, Any]]:
    """``queuewatch workers --json`` as an operator runs it."""
    args = [QUEUEWATCH, "workers", "--json", "--vhost", vhost]
    if amqp_url:
        args += ["--amqp-url", amqp_url]
    if management_url:
        args += ["--management-url", management_url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def log_time(log: str, needle: str) -> float | None:
    """Epoch seconds of the first log line (``queuewatch worker -v`` format) holding ``needle``."""
    for line in log.splitlines():
        if needle in line:
            try:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            return stamp.timestamp()
    return None


def elapsed_since(start: float) -> float:
    return round(time.monotonic() - start, 2)
