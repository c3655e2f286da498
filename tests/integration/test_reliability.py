"""Break a worker process and count: kill -9 mid-job over and over, and SIGTERM mid-work.

Each worker is a real subprocess (the script below). It logs every job it starts to
``starts-<pid>.log`` and writes its side effect in the same SQLite transaction as the
idempotency record (``SqliteStore.completing``), so the ledger can tell lost jobs,
redelivered jobs and duplicated side effects apart.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from queuewatch.producer import AsyncProducer
from queuewatch.topology import QueueSpec, RetryPolicy
from tests.helpers import Ledger, declare, depth, wait_until

WORKER_SCRIPT = textwrap.dedent('''
    import asyncio, os, random, sys
    from dataclasses import replace
    from pathlib import Path
    from queuewatch.config import load_settings
    from queuewatch.idempotency import SqliteStore
    from queuewatch.topology import QueueSpec, RetryPolicy, Topology
    from queuewatch.worker import Job, Worker

    amqp_url, vhost, workdir, sleep_s, conc = sys.argv[1:6]
    work = Path(workdir)
    settings = replace(load_settings(env={}, amqp_url=amqp_url, vhost=vhost), state_dir=work)
    topo = Topology(queues=(QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)),), delay_levels=1)
    store = SqliteStore(work / "idem.sqlite3")
    store._db.execute("CREATE TABLE IF NOT EXISTS effects (job_id TEXT, pid INTEGER)")
    worker = Worker(settings, topo, concurrency=int(conc), idempotency=store,
                    shutdown_timeout=10, heartbeat_interval=0.5)
    starts = os.open(work / f"starts-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    @worker.job("jobs")
    async def handle(job: Job) -> None:
        os.write(starts, (job.job_id + "\\n").encode())
        await asyncio.sleep(float(sleep_s) * random.uniform(0.5, 1.5))
        with store.completing(job.idempotency_key) as db:
            db.execute("INSERT INTO effects VALUES (?, ?)", (job.job_id, os.getpid()))

    async def main() -> None:
        task = asyncio.create_task(worker.run(handle_signals=True))
        await worker.connected.wait()
        (work / f"ready-{os.getpid()}").touch()
        await task

    asyncio.run(main())
''')


def start_worker(settings, vhost: str, work: Path, sleep_s: float, conc: int) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    script = work / "ledger_worker.py"
    if not script.exists():
        script.write_text(WORKER_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), settings.amqp_url, vhost, str(work), str(sleep_s), str(conc)],
        cwd=str(Path(__file__).resolve().parents[2]),
        stderr=(work / "worker-stderr.log").open("ab"),
    )


def starts_of(work: Path, pid: int) -> list[str]:
    path = work / f"starts-{pid}.log"
    return path.read_text().split() if path.exists() else []


def effects(work: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(work / "idem.sqlite3", timeout=30)
    try:
        return list(db.execute("SELECT job_id, pid FROM effects"))
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def in_flight(work: Path, pid: int) -> int:
    return len(set(starts_of(work, pid)) - {j for j, p in effects(work) if p == pid})


async def publish_jobs(settings, topo, n: int, ledger: Ledger) -> None:  # type: ignore[no-untyped-def]
    async with AsyncProducer(settings, topo) as producer:
        futs = {}
        for i in range(n):
            jid = f"job-{i:05d}"
            ledger.sent.add(jid)
            futs[jid] = await producer.submit("jobs", {"i": i}, job_id=jid)
        await producer.flush()
    ledger.confirmed.update(j for j, f in futs.items() if f.exception() is None)


async def wait_ready(work: Path, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    await wait_until(lambda: (work / f"ready-{proc.pid}").exists() or proc.poll() is not None,
                     timeout=timeout, what=f"worker {proc.pid} ready")
    assert proc.poll() is None, f"worker exited early with {proc.returncode}"


@pytest.mark.slow
async def test_kill_9_mid_job_repeatedly_loses_nothing(connection, settings, vhost, tmp_path):
    # Given 5,000 confirmed jobs
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)),
                         delay_levels=1)
    ledger = Ledger()
    await publish_jobs(settings, topo, 5000, ledger)
    assert len(ledger.confirmed) == 5000
    # When worker processes are killed with SIGKILL mid-job, ten times over
    killed: list[int] = []
    rnd = random.Random(7)
    procs = []
    while len(killed) < 10:
        proc = start_worker(settings, vhost, tmp_path, 0.02, 10)
        procs.append(proc)
        await wait_ready(tmp_path, proc)
        await wait_until(lambda p=proc: len(starts_of(tmp_path, p.pid)) >= 20, timeout=20,
                         what="jobs started")
        await asyncio.sleep(rnd.uniform(0.1, 0.5))
        # kill at a moment when several jobs are mid-run (started, side effect not written)
        await wait_until(lambda p=proc: in_flight(tmp_path, p.pid) >= 5, timeout=10,
                         interval=0.01, what="jobs in flight")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed.append(proc.pid)
    # And a last worker drains the queue and is stopped gracefully
    final = start_worker(settings, vhost, tmp_path, 0.0, 20)
    await wait_ready(tmp_path, final)
    await wait_until(lambda: len({j for j, _ in effects(tmp_path)}) >= 5000, timeout=40,
                     interval=0.5, what="all side effects")
    final.send_signal(signal.SIGTERM)
    assert final.wait(20) == 0
    # Then the ledger shows nothing lost and nothing unexpected
    pids = [p.pid for p in procs] + [final.pid]
    for pid in pids:
        ledger.record_received(starts_of(tmp_path, pid))
    done = effects(tmp_path)
    effect_counts = Counter(j for j, _ in done)
    assert ledger.lost == set(), ledger.summary()
    assert ledger.unexpected == set()
    assert set(effect_counts) == ledger.confirmed
    # And every kill hit jobs in flight; only those were delivered twice
    in_flight_at_kill: set[str] = set()
    for pid in killed:
        running = set(starts_of(tmp_path, pid)) - {j for j, p in done if p == pid}
        assert running, (f"kill of {pid} hit no job in flight: started "
                         f"{len(starts_of(tmp_path, pid))}, effects {sum(p == pid for _, p in done)}")
        in_flight_at_kill |= running
    redelivered = {j for j, n in ledger.received.items() if n > 1}
    assert redelivered <= in_flight_at_kill
    # And no side effect happened twice (idempotency on)
    assert max(effect_counts.values()) == 1
    assert await depth(connection, "jobs") == 0


async def test_sigterm_finishes_in_flight_and_loses_nothing(connection, settings, vhost, tmp_path):
    # Given 300 jobs of 50 ms and a worker running 10 at a time
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)),
                         delay_levels=1)
    ledger = Ledger()
    await publish_jobs(settings, topo, 300, ledger)
    proc = start_worker(settings, vhost, tmp_path, 0.05, 10)
    await wait_ready(tmp_path, proc)
    await wait_until(lambda: len(starts_of(tmp_path, proc.pid)) >= 30, what="work under way")
    # When it gets SIGTERM mid-work
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    # Then every job it started finished (no job was cut off) ...
    first = starts_of(tmp_path, proc.pid)
    finished = {j for j, _ in effects(tmp_path)}
    assert set(first) == finished
    # ... and the rest were left in the queue: finished + queued = all, none lost
    assert len(finished) + await depth(connection, "jobs") == 300
    second = start_worker(settings, vhost, tmp_path, 0.0, 10)
    await wait_ready(tmp_path, second)
    await wait_until(lambda: len(effects(tmp_path)) >= 300, timeout=20, what="the rest")
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0
    ledger.record_received(first + starts_of(tmp_path, second.pid))
    assert ledger.lost == set() and ledger.duplicated == 0, ledger.summary()
