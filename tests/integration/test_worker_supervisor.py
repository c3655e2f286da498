"""``queuewatch worker --processes N``: kill -9 a child mid-run (it is restarted, nothing is
lost, no side effect twice through the shared SQLite store), and SIGTERM stops every child
gracefully.

The app writes each job's start to ``starts-<pid>.log`` and its side effect in the same
SQLite transaction as its idempotency record (``SqliteStore.completing``) in the one store
all children share (``<state_dir>/idempotency.sqlite3``).
"""

from __future__ import annotations

import os
import re
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
APP = textwrap.dedent('''
    import asyncio, os
    from pathlib import Path
    from queuewatch.topology import QueueSpec, RetryPolicy, Topology
    from queuewatch.worker import Job, Worker

    def make_worker(settings):
        topo = Topology(queues=(QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)),),
                        delay_levels=1)
        worker = Worker(settings, topo, concurrency=8, shutdown_timeout=10,
                        heartbeat_interval=0.5)
        store = worker.store
        store._db.execute("CREATE TABLE IF NOT EXISTS effects (job_id TEXT, pid INTEGER)")
        starts = os.open(Path(os.environ["QWT_WORK"]) / f"starts-{os.getpid()}.log",
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND)

        @worker.job("jobs")
        async def handle(job: Job) -> None:
            os.write(starts, (job.job_id + "\\n").encode())
            await asyncio.sleep(0.01)
            with store.completing(job.idempotency_key) as db:
                db.execute("INSERT INTO effects VALUES (?, ?)", (job.job_id, os.getpid()))

        return worker
''')
STARTED = re.compile(r"worker process (\d+) started \(pid (\d+)\)")


def effects(state: Path) -> list[tuple[str, int]]:
    if not (state / "idempotency.sqlite3").exists():
        return []
    db = sqlite3.connect(state / "idempotency.sqlite3", timeout=30)
    try:
        return list(db.execute("SELECT job_id, pid FROM effects"))
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def children(log: Path) -> dict[int, list[int]]:
    """Slot -> pids started in it, in order, from the supervisor's log."""
    out: dict[int, list[int]] = {}
    for slot, pid in STARTED.findall(log.read_text() if log.exists() else ""):
        out.setdefault(int(slot), []).append(int(pid))
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def publish(settings, topo, n: int, ledger: Ledger) -> None:  # type: ignore[no-untyped-def]
    async with AsyncProducer(settings, topo) as producer:
        futs = {}
        for i in range(n):
            jid = f"job-{i:05d}"
            ledger.sent.add(jid)
            futs[jid] = await producer.submit("jobs", {"i": i}, job_id=jid)
        await producer.flush()
    ledger.confirmed.update(j for j, f in futs.items() if f.exception() is None)


async def test_kill_9_a_child_is_restarted_nothing_lost_and_sigterm_stops_all(
        connection, settings, vhost, tmp_path):
    # Given 2,000 confirmed jobs and `queuewatch worker --processes 2` on them
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)),
                         delay_levels=1)
    ledger = Ledger()
    await publish(settings, topo, 2000, ledger)
    assert len(ledger.confirmed) == 2000
    (tmp_path / "app.py").write_text(APP)
    log = tmp_path / "supervisor.log"
    env = {**os.environ, "QWT_WORK": str(tmp_path), "QUEUEWATCH_STATE_DIR": str(settings.state_dir)}
    sup = subprocess.Popen(
        [sys.executable, "-m", "queuewatch.cli.main", "worker", f"{tmp_path / 'app.py'}:make_worker",
         "--processes", "2", "--name", "sup", "--amqp-url", settings.amqp_url, "--vhost", vhost,
         "--management-url", settings.management_url],
        cwd=ROOT, env=env, stderr=log.open("wb"), start_new_session=True)
    try:
        await wait_until(lambda: len(children(log)) == 2 or sup.poll() is not None, timeout=30,
                         what="two children")
        assert sup.poll() is None, log.read_text()
        first = {slot: pids[0] for slot, pids in children(log).items()}
        # When child 1 is killed with SIGKILL while jobs run in both children
        await wait_until(lambda: {p for _, p in effects(settings.state_dir)} >= set(first.values()),
                         timeout=30, what="both children doing jobs")
        os.kill(first[1], signal.SIGKILL)
        # Then the supervisor starts a new child in its slot; the other is untouched
        await wait_until(lambda: len(children(log).get(1, [])) == 2, timeout=20,
                         what="child 1 restarted")
        restarted = children(log)[1][1]
        assert "exited with signal SIGKILL" in log.read_text()
        assert alive(first[2]) and children(log)[2] == [first[2]]
        # And every job gets done, by both children and the new one
        await wait_until(lambda: len({j for j, _ in effects(settings.state_dir)}) >= 2000,
                         timeout=120, interval=0.5, what="all side effects")
        assert restarted in {p for _, p in effects(settings.state_dir)}
        # When the supervisor gets SIGTERM
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(40) == 0, log.read_text()[-2000:]
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()
    # Then every child exited (gracefully: the supervisor's exit code 0 says none was killed)
    assert not any(alive(p) for p in (restarted, first[2]))
    # And the ledger shows nothing lost, nothing unexpected, no side effect twice
    pids = [first[1], first[2], restarted]
    for pid in pids:
        path = tmp_path / f"starts-{pid}.log"
        ledger.record_received(path.read_text().split() if path.exists() else [])
    done = Counter(j for j, _ in effects(settings.state_dir))
    assert ledger.lost == set(), ledger.summary()
    assert ledger.unexpected == set()
    assert set(done) == ledger.confirmed and max(done.values()) == 1
    assert await depth(connection, "jobs") == 0


async def test_sigterm_reaches_every_child_mid_work(connection, settings, vhost, tmp_path):
    # Given 3 processes working through 3,000 jobs
    topo = await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)),
                         delay_levels=1)
    ledger = Ledger()
    await publish(settings, topo, 3000, ledger)
    (tmp_path / "app.py").write_text(APP)
    log = tmp_path / "supervisor.log"
    env = {**os.environ, "QWT_WORK": str(tmp_path), "QUEUEWATCH_STATE_DIR": str(settings.state_dir)}
    sup = subprocess.Popen(
        [sys.executable, "-m", "queuewatch.cli.main", "worker", f"{tmp_path / 'app.py'}:make_worker",
         "--processes", "3", "--amqp-url", settings.amqp_url, "--vhost", vhost,
         "--management-url", settings.management_url],
        cwd=ROOT, env=env, stderr=log.open("wb"), start_new_session=True)
    try:
        await wait_until(lambda: len({p for _, p in effects(settings.state_dir)}) == 3
                         or sup.poll() is not None, timeout=40, what="three children working")
        assert sup.poll() is None, log.read_text()
        pids = [p[0] for p in children(log).values()]
        # When the supervisor gets SIGTERM mid-work
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(40) == 0, log.read_text()[-2000:]
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()
    # Then all three exited, every job a child started was finished (none cut off), and
    # finished + still queued = all
    assert not any(alive(p) for p in pids)
    started = [j for p in pids for j in (tmp_path / f"starts-{p}.log").read_text().split()]
    finished = {j for j, _ in effects(settings.state_dir)}
    assert set(started) == finished
    assert len(finished) + await depth(connection, "jobs") == 3000
