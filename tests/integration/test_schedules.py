"""Recurring jobs on the real broker: two scheduler processes fire each tick of a 1-second
schedule exactly once, also across a kill -9 of the leader; missed ticks follow their
policy; schedules change at run time from the CLI and every scheduler sees it."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from queuewatch.broker.connect import connect
from queuewatch.config import Settings
from queuewatch.schedules import Schedule, Scheduler, ScheduleStore, list_schedules, with_store
from queuewatch.schedules.scheduler import Fired
from queuewatch.topology import QueueSpec, Topology
from tests.helpers import declare, drain, wait_until
from tests.schedulers import start_scheduler
from tests.workers import QUEUEWATCH, start_worker_process, wait_consuming

pytestmark = pytest.mark.timeout(240)


def tick_seconds(job_ids: list[str]) -> list[int]:
    return sorted(int(datetime.strptime(j.split("@", 1)[1], "%Y-%m-%dT%H:%M:%S%z").timestamp())
                  for j in job_ids)


@pytest.mark.slow
async def test_two_schedulers_fire_each_tick_once_across_a_kill9_of_the_leader(
        settings: Settings, vhost: str, tmp_path: Path, connection) -> None:  # type: ignore[no-untyped-def]
    # Given a worker on "ticks" and two scheduler processes with a 1-second schedule
    await declare(connection, vhost, QueueSpec("ticks"), delay_levels=1)
    topo = tmp_path / "topology.toml"
    topo.write_text('[[queue]]\nname = "ticks"\n\n[[schedule]]\nname = "beat"\nqueue = "ticks"\n'
                    'every = 1\npayload = {}\n')
    wp = start_worker_process(tmp_path, amqp_url=settings.amqp_url_for(), vhost=vhost, worker_id="w1",
                              specs=[{"name": "ticks"}])
    s1 = s2 = None
    try:
        await wait_consuming(wp, "ticks")
        s1 = start_scheduler(tmp_path, amqp_url=settings.amqp_url, vhost=vhost, name="s1",
                             topology=topo)
        await wait_until(lambda: s1.leads_at() is not None, timeout=60, what="s1 leads")
        s2 = start_scheduler(tmp_path, amqp_url=settings.amqp_url, vhost=vhost, name="s2",
                             topology=topo)
        await wait_until(lambda: "s2 ready" in s2.stderr(), timeout=60, what="s2 started")
        await asyncio.sleep(12)
        assert s2.leads_at() is None, "a second leader while the first was alive"
        # When the leader is killed -9 mid-way
        killed_at = s1.kill9()
        await wait_until(lambda: s2.leads_at() is not None, timeout=15, what="s2 takes over")
        takeover = s2.leads_at() - killed_at  # type: ignore[operator]
        await asyncio.sleep(12)
        stopped_at = time.time()
        assert s2.terminate() == 0
        await asyncio.sleep(3)  # the worker runs what is left
        # Then every tick between the first and the last ran exactly once: no double fire,
        # no gap (the ticks of the hand-over are fired late by the new leader)
        runs = wp.runs("start")
        ids = [j for j in runs if j.startswith("beat@")]
        doubles = {j: len(t) for j, t in runs.items() if len(t) > 1}
        seconds = tick_seconds(ids)
        gaps = [b - a for a, b in itertools.pairwise(seconds) if b - a != 1]
        print(f"ticks={len(ids)} takeover={takeover:.2f}s doubles={doubles} gaps={gaps}")
        assert not doubles, f"ticks fired twice: {doubles}"
        assert not gaps, f"missing ticks: {gaps}"
        assert len(ids) >= 20
        assert seconds[0] <= killed_at - 10 and seconds[-1] >= stopped_at - 3
        assert 0 < takeover < 5, f"takeover took {takeover:.2f}s"
    finally:
        for p in (s1, s2):
            if p is not None and p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(10)
        wp.terminate()


async def test_missed_ticks_skip_or_fire_once(settings: Settings) -> None:
    # Given two 1-second schedules with 1 s of grace, one per missed-tick policy
    conn = await connect(settings)
    await declare(conn, settings.effective_vhost, QueueSpec("skipq"), QueueSpec("onceq"))
    topology = Topology(queues=(QueueSpec("skipq"), QueueSpec("onceq")))
    schedules = [Schedule("skipper", "skipq", every=1, grace=1, missed="skip"),
                 Schedule("oncer", "onceq", every=1, grace=1, missed="fire_once")]
    raw = tuple(s.definition() for s in schedules)
    topology = Topology(queues=topology.queues, schedules=raw)
    first = Scheduler(settings, topology, name="a")
    async with first:
        run = asyncio.create_task(first.run())
        await wait_until(lambda: len({f.name for f in first.fired}) == 2, timeout=30,
                         what="both schedules fired")
        first.stop()
        await run
    last_fired = max(f.tick_ms for f in first.fired)
    # When every scheduler is down for 5 s (ticks missed), then one comes back
    await asyncio.sleep(5)
    second = Scheduler(settings, topology, name="b")
    fired: list[Fired] = []
    async with second:
        second.on_fired = fired.append
        run = asyncio.create_task(second.run())
        await wait_until(lambda: sum(f.name == "skipper" for f in fired) >= 2, timeout=30,
                         what="skipper fires again")
        back_at = second.leader_since
        second.stop()
        await run
    assert back_at is not None
    skipper = [f for f in fired if f.name == "skipper"]
    oncer = [f for f in fired if f.name == "oncer"]
    # Then skip: nothing older than the grace is fired; fire_once: exactly one job for the
    # missed ticks (the latest missed tick's id), then the normal ticks
    assert all(f.tick_ms > back_at * 1000 - 2000 for f in skipper), skipper
    assert not any(f.missed for f in skipper)
    missed = [f for f in oncer if f.missed]
    assert len(missed) == 1 and last_fired < missed[0].tick_ms < back_at * 1000 - 1000
    assert not any(last_fired < f.tick_ms < missed[0].tick_ms for f in oncer)
    # and the jobs are really on the queues, one per fired tick, no duplicate
    for queue, mine in (("skipq", [*first.fired, *skipper]), ("onceq", [*first.fired, *oncer])):
        expected = {f.job_id for f in mine if f.name == ("skipper" if queue == "skipq" else "oncer")}
        got = [m.message_id for m in await drain(conn, queue, len(expected) + 5, timeout=3)]
        assert sorted(got) == sorted(expected)
    await conn.close()


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QUEUEWATCH, "schedules", *args, "--amqp-url", settings.amqp_url,
                           "--vhost", settings.effective_vhost], capture_output=True, text=True,
                          timeout=60, env={"XDG_STATE_HOME": str(settings.state_dir), "PATH": "/usr/bin:/bin"})


async def test_runtime_changes_from_the_cli_reach_a_running_scheduler(settings: Settings) -> None:
    conn = await connect(settings)
    await declare(conn, settings.effective_vhost, QueueSpec("rt"))
    scheduler = Scheduler(settings, Topology(queues=(QueueSpec("rt"),)), name="rt")
    async with scheduler:
        run = asyncio.create_task(scheduler.run())
        # add from the CLI: the running scheduler fires it
        r = await asyncio.to_thread(cli, settings, "add", "pulse", "--queue", "rt", "--every", "1",
                                    "--payload", '{"n": 1}')
        assert r.returncode == 0, r.stderr
        await wait_until(lambda: any(f.name == "pulse" for f in scheduler.fired), timeout=20,
                         what="added schedule fires")
        # pause: no more ticks
        r = await asyncio.to_thread(cli, settings, "pause", "pulse")
        assert r.returncode == 0 and "paused schedule pulse" in r.stdout, r.stderr
        await asyncio.sleep(1.5)
        n = len(scheduler.fired)
        await asyncio.sleep(2.5)
        assert len(scheduler.fired) == n
        # list: last run, its outcome (from job events), next run (none while paused)
        listing = await list_schedules(settings)
        (v,) = listing.schedules
        assert v.paused and v.last_job is not None and v.next_ms is None
        assert listing.leader == "rt" and listing.leader_running is True
        assert v.outcome == "queued"  # no worker: the job waits
        r = await asyncio.to_thread(cli, settings, "list", "--json")
        listed = json.loads(r.stdout)
        assert listed["schedules"][0]["name"] == "pulse" and listed["leader"] == "rt"
        assert listed["leader_running"] is True
        # resume, then remove
        r = await asyncio.to_thread(cli, settings, "resume", "pulse")
        assert r.returncode == 0
        await wait_until(lambda: len(scheduler.fired) > n, timeout=10, what="fires again")
        r = await asyncio.to_thread(cli, settings, "remove", "pulse")
        assert r.returncode == 0
        r = await asyncio.to_thread(cli, settings, "remove", "pulse")
        assert r.returncode == 2 and "no schedule named 'pulse'" in r.stderr
        scheduler.stop()
        await run
    # no scheduler now: the listing says so
    assert (await list_schedules(settings)).leader_running is False
    # the changes are durable: a new reader sees the schedule removed
    async def names(store: ScheduleStore) -> list[str]:
        return sorted(store.book.entries)
    assert await with_store(settings, names) == []
    await conn.close()


def test_a_schedule_for_a_missing_queue_is_written_with_a_warning(settings: Settings) -> None:
    # Given no queue "nosuchq" in the vhost (a typo, or a queue declared later)
    # When a schedule is added for it, then changed
    added = cli(settings, "add", "typo", "--queue", "nosuchq", "--every", "5")
    changed = cli(settings, "change", "typo", "--every", "7")
    # Then both are written (the queue may come later) and both say no tick fires until it exists
    for r in (added, changed):
        assert r.returncode == 0, r.stderr
        assert "warning: queue 'nosuchq' does not exist in this vhost" in r.stdout, r.stdout
    assert "every 7s" in cli(settings, "list").stdout
    # And a schedule for a queue that exists gets no warning
    r = cli(settings, "change", "typo", "--queue", "schedules.exists")
    assert "warning" in r.stdout  # not declared yet
    asyncio.run(_declare(settings, "schedules.exists"))
    r = cli(settings, "change", "typo", "--every", "9")
    assert r.returncode == 0 and "warning" not in r.stdout, r.stdout


async def _declare(settings: Settings, queue: str) -> None:
    conn = await connect(settings)
    await declare(conn, settings.effective_vhost, QueueSpec(queue))
    await conn.close()


async def test_a_tick_that_cannot_be_published_is_logged_and_fired_once_the_queue_exists(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    # Given a schedule for a queue that does not exist yet
    raw = (Schedule("early", "notyet", every=1, grace=30).definition(),)
    scheduler = Scheduler(settings, Topology(queues=(QueueSpec("notyet"),), schedules=raw),
                          name="early")
    async with scheduler:
        run = asyncio.create_task(scheduler.run())
        await wait_until(lambda: "not fired" in caplog.text, timeout=20, what="error logged")
        # Then it is one logged error per retry (not a crash, not a flood), and once the queue
        # exists the late tick fires
        await asyncio.sleep(2)
        errors = [r for r in caplog.records if "not fired" in r.getMessage()]
        assert 1 <= len(errors) <= 4 and not run.done()
        conn = await connect(settings)
        await declare(conn, settings.effective_vhost, QueueSpec("notyet"))
        await wait_until(lambda: bool(scheduler.fired), timeout=20, what="fired once declared")
        first = min(f.tick_ms for f in scheduler.fired)
        assert first <= min(int(r.created * 1000) for r in errors)  # the late tick, not skipped
        scheduler.stop()
        await run
        await conn.close()


async def test_an_unnamed_scheduler_leaves_no_job_index_behind(settings: Settings) -> None:
    scheduler = Scheduler(settings)
    async with scheduler:
        assert scheduler.jobs is not None
        index = Path(scheduler.jobs.index.path)
        assert index.exists()
    assert not index.exists()
