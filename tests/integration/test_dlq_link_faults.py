"""Replay and import end with the truth when the link breaks, goes silent, or the DLQ is
deleted under them: within a bounded time, with a report and a non-zero exit; 0 lost over
every run (a ledger of ids), duplicates bounded by what was in flight.

The link faults go through a loopback TCP proxy (tests/proxy.py). Before these deadlines,
a replay of 20,000 cut mid-way never ended in 8 of 9 tries (it waited for confirms that
could not come), and one that ended reported the cut as success.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from typing import Any

import pytest

from queuewatch.broker.connect import connect
from queuewatch.dlq import DeadLetterQueue
from queuewatch.dlq.replay import DEFAULT_WINDOW, ReplayResult
from queuewatch.dlq.transfer import ImportStopped
from tests.helpers import Ledger, consumers, depth, wait_until
from tests.integration.test_dlq_support import (
    dlq_cli,
    publish_many_dead_letters,
    setup_jobs,
    start_dlq_cli,
    take_all_ids,
    through,
)
from tests.proxy import TcpProxy

N = 20_000
ENDS_WITHIN = 60.0
"""The issue's bound on how long a broken replay or import may take to end."""
IN_FLIGHT_BOUND = 3 * DEFAULT_WINDOW
"""What can be duplicated: deliveries unacked at the moment of the fault (the replay's
per-consumer prefetch is 3 x its window of unconfirmed republishes)."""


async def fresh_dead_letters(connection: Any, n: int = N) -> Ledger:
    ids = await publish_many_dead_letters(connection, "jobs", n)
    return Ledger(sent=set(ids), confirmed=set(ids))


async def count_everything(connection: Any, ledger: Ledger) -> dict[str, int]:
    """After a fault: wait until the broker dropped the broken consumers (so their unacked
    deliveries are back), then take every id out of both queues."""
    await wait_until(lambda: _none_consume(connection), timeout=60, what="consumers gone")
    ledger.record_received(await take_all_ids(connection, "jobs"))
    ledger.record_received(await take_all_ids(connection, "jobs.dlq"))
    return ledger.summary()


async def _none_consume(connection: Any) -> bool:
    return await consumers(connection, "jobs.dlq") == 0


async def cut_when_replayed(connection: Any, proxy: TcpProxy, at: int, how: str = "cut") -> float:
    """Cut (or black-hole) the proxy once ``at`` dead letters reached "jobs"; returns when."""
    await wait_until(lambda: _at_least(connection, "jobs", at), timeout=60, interval=0.01,
                     what=f"{at} replayed")
    getattr(proxy, how)()
    return time.monotonic()


async def _at_least(connection: Any, queue: str, n: int) -> bool:
    return await depth(connection, queue) >= n


async def replay_through(proxy: TcpProxy, settings: Any, how: str, at: int,
                         connection: Any) -> tuple[ReplayResult, float]:
    """A per-message replay of jobs.dlq whose link (both connections) goes through
    ``proxy``, broken ``how`` once ``at`` were replayed. Returns the result and how long it
    took to end after the fault."""
    psettings = through(settings, proxy.port)
    pconn = await connect(psettings)
    dlq = DeadLetterQueue(pconn, None, psettings, "jobs.dlq")
    task = asyncio.ensure_future(dlq.replay(via_shovel=False))
    try:
        broke_at = await cut_when_replayed(connection, proxy, at, how)
        result = await asyncio.wait_for(task, ENDS_WITHIN)
        took = time.monotonic() - broke_at
    finally:
        task.cancel()
        proxy.cut()  # a black-holed link is reset now, so the broker requeues what it held
        try:
            await asyncio.wait_for(pconn.close(), 2)
        except Exception:
            pass  # a dead link may not close cleanly
    return result, took


def assert_truthful(result: ReplayResult) -> None:
    assert result.error is not None, "a broken replay must not report success"
    assert result.outcome in ("partial", "error")
    assert 0 < result.replayed < N and result.total == N
    assert result.scanned + result.not_scanned == N


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_replay_of_20000_cut_mid_way_ten_times_ends_truthfully_and_loses_nothing(
        connection, settings, vhost):
    # Given "jobs", its DLQ holding 20,000 dead letters, and a replay whose link goes
    # through a proxy; one ledger of ids over all runs
    await setup_jobs(connection, vhost)
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    ledger = await fresh_dead_letters(connection)
    rows = []
    in_doubt = 0
    for run in range(10):
        # When the link is cut at a random point of each of ten replays of 20,000
        at = rng.randrange(2_000, 16_000)
        with TcpProxy(("127.0.0.1", 5672)) as proxy:
            result, took = await replay_through(proxy, settings, "cut", at, connection)
        # Then every run ends within the bound, saying it stopped and why
        assert took <= ENDS_WITHIN, (rows, took)
        assert_truthful(result)
        await wait_until(lambda: _none_consume(connection), timeout=60, what="consumers gone")
        moved = await take_all_ids(connection, "jobs")
        before = sum(ledger.received.values()) - len(ledger.received)
        ledger.record_received(moved)
        dups = sum(ledger.received.values()) - len(ledger.received) - before
        in_doubt += result.in_doubt
        rows.append((run, at, round(took, 2), result.replayed, result.in_doubt, len(moved), dups))
        # (the DLQ is topped up to 20,000 for the next run; what stayed is replayed then)
        top_up = N - await depth(connection, "jobs.dlq")
        new = await publish_many_dead_letters(connection, "jobs", top_up)
        ledger.sent.update(new)
        ledger.confirmed.update(new)
    ledger.record_received(await take_all_ids(connection, "jobs.dlq"))
    summary = ledger.summary()
    print(f"\nseed {seed}; run, cut at, s to end, replayed, in doubt, reached jobs, new duplicates:")
    for row in rows:
        print("  ", row)
    print("over all runs:", summary)
    # And over all runs nothing was lost, and duplicates stayed within what was in doubt
    assert summary["lost"] == 0 and summary["unexpected"] == 0, (rows, summary)
    assert summary["duplicated"] <= in_doubt, (rows, summary)


@pytest.mark.slow
async def test_replay_through_the_cli_cut_mid_way_exits_1_with_a_report(connection, settings, vhost):
    # Given 20,000 dead letters and `queuewatch dlq replay` whose AMQP goes through a proxy
    await setup_jobs(connection, vhost)
    ledger = await fresh_dead_letters(connection)
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        proc = await start_dlq_cli(settings, "replay", "jobs", "--yes", "--per-message",
                                   amqp_url=through(settings, proxy.port).amqp_url)
        # When the link is cut mid-way
        broke_at = await cut_when_replayed(connection, proxy, N // 3)
        out, err = await asyncio.wait_for(proc.communicate(), ENDS_WITHIN)
        took = time.monotonic() - broke_at
    # Then the process ended within the bound, exit 1, with a report and no traceback
    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == 1, (stdout, stderr)
    assert "STOPPED EARLY" in stdout and "link" in stdout, stdout
    assert "not looked at" in stdout and "Traceback" not in stderr, (stdout, stderr)
    summary = await count_everything(connection, ledger)
    print(f"\nCLI replay: ended {took:.1f}s after the cut; {summary}\n{stdout}")
    assert took <= ENDS_WITHIN
    assert summary["lost"] == 0 and summary["unexpected"] == 0, summary
    assert summary["duplicated"] <= IN_FLIGHT_BOUND, summary


@pytest.mark.slow
async def test_replay_whose_link_goes_silent_ends_by_its_own_deadline(connection, settings, vhost):
    # Given 20,000 dead letters and a replay through a proxy, with the default heartbeat
    await setup_jobs(connection, vhost)
    ledger = await fresh_dead_letters(connection)
    # When the link goes silent mid-way (a black hole: nothing passes, nothing closes)
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        result, took = await replay_through(proxy, settings, "blackhole", N // 3, connection)
    # Then queuewatch's own probe ends it (well before heartbeats would), with a report
    print(f"\nblack hole: ended {took:.1f}s after it; {result.error}")
    assert took <= 30, took
    assert_truthful(result)
    assert "silent" in (result.error or "")
    summary = await count_everything(connection, ledger)
    print(summary)
    assert summary["lost"] == 0 and summary["unexpected"] == 0, summary
    assert summary["duplicated"] <= IN_FLIGHT_BOUND, summary


async def test_dlq_deleted_mid_replay_is_not_reported_as_success(connection, settings, vhost):
    # Given 5,000 dead letters and a throttled per-message replay (a small window, so most
    # dead letters are still in the DLQ, not delivered, when it is deleted)
    await setup_jobs(connection, vhost)
    await fresh_dead_letters(connection, 5000)
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    task = asyncio.ensure_future(dlq.replay(via_shovel=False, rate=4000, window=100))
    # When the DLQ is deleted once 1,000 were replayed
    await wait_until(lambda: _at_least(connection, "jobs", 1000), timeout=30, interval=0.01)
    channel = await connection.channel()
    await channel.queue_delete("jobs.dlq")
    await channel.close()
    result = await asyncio.wait_for(task, ENDS_WITHIN)
    # Then the result names the deletion and is not "ok"
    assert result.dlq_deleted and "was deleted" in (result.error or ""), result.error
    assert result.outcome == "partial" and 1000 <= result.replayed < 5000
    # And every dead letter it counts as replayed is in "jobs" (0 lost of those)
    moved = set(await take_all_ids(connection, "jobs"))
    assert result.replayed <= len(moved) <= result.replayed + result.in_doubt


async def test_dlq_deleted_mid_replay_through_the_cli_exits_1_naming_it(connection, settings, vhost):
    await setup_jobs(connection, vhost)
    await fresh_dead_letters(connection, 10_000)
    proc = await start_dlq_cli(settings, "replay", "jobs", "--yes", "--per-message",
                               "--rate", "4000")
    await wait_until(lambda: _at_least(connection, "jobs", 1000), timeout=30, interval=0.01)
    channel = await connection.channel()
    await channel.queue_delete("jobs.dlq")
    await channel.close()
    out, err = await asyncio.wait_for(proc.communicate(), ENDS_WITHIN)
    stdout = out.decode()
    assert proc.returncode == 1, (stdout, err.decode())
    assert "jobs.dlq' was deleted" in stdout and "deleted with the DLQ" in stdout, stdout
    assert "Traceback" not in err.decode()


@pytest.mark.slow
async def test_import_cut_mid_way_ends_with_a_report_and_resumes_without_loss(
        connection, settings, vhost, tmp_path):
    # Given an export of 20,000 dead letters and an empty DLQ
    await setup_jobs(connection, vhost)
    ledger = await fresh_dead_letters(connection)
    direct = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    path = tmp_path / "dlq.jsonl"
    assert await direct.export(path) == N
    assert await direct.purge() == N
    # When it is imported through a proxy that is cut a third of the way
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        psettings = through(settings, proxy.port)
        pconn = await connect(psettings)
        task = asyncio.ensure_future(DeadLetterQueue(pconn, None, psettings, "jobs.dlq")
                                     .import_(path))
        await wait_until(lambda: _at_least(connection, "jobs.dlq", N // 3), timeout=60,
                         interval=0.01)
        proxy.cut()
        broke_at = time.monotonic()
        with pytest.raises(ImportStopped) as stopped:
            await asyncio.wait_for(task, ENDS_WITHIN)
        took = time.monotonic() - broke_at
    # Then it ended within the bound, saying what moved, what stayed and where to resume
    r = stopped.value.result
    print(f"\nimport cut: ended {took:.1f}s after the cut\n{stopped.value}")
    assert took <= ENDS_WITHIN and r.error and "link" in r.error
    assert 0 < r.resume_at <= r.confirmed + r.skipped < N
    assert r.confirmed + r.in_doubt + r.refused + r.not_sent == N
    assert f"--skip {r.resume_at}" in str(stopped.value)
    # And the CLI resumes it from there to the end: 0 lost, duplicates within what was in doubt
    resumed = await dlq_cli(settings, "import", "jobs", str(path), "--skip", str(r.resume_at))
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    # (lines confirmed past resume_at are recorded as imported: not published again)
    assert f"of {N} messages from {path} into 'jobs.dlq'" in resumed.stdout, resumed.stdout
    ledger.record_received(await take_all_ids(connection, "jobs.dlq"))
    summary = ledger.summary()
    print(summary)
    assert summary["lost"] == 0 and summary["unexpected"] == 0, summary
    assert summary["duplicated"] <= r.confirmed + r.in_doubt - r.resume_at, summary


async def test_import_into_a_queue_deleted_under_it_ends_naming_it(connection, settings, vhost, tmp_path):
    # Given an export of 5,000 and a CLI import of it into an empty DLQ
    await setup_jobs(connection, vhost)
    await fresh_dead_letters(connection, 5000)
    direct = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    path = tmp_path / "dlq.jsonl"
    await direct.export(path)
    await direct.purge()
    proc = await start_dlq_cli(settings, "import", "jobs.dlq", str(path))
    # When the queue is deleted under it
    await wait_until(lambda: _at_least(connection, "jobs.dlq", 500), timeout=30, interval=0.005)
    channel = await connection.channel()
    await channel.queue_delete("jobs.dlq")
    await channel.close()
    out, err = await asyncio.wait_for(proc.communicate(), ENDS_WITHIN)
    # Then it stops (exit 1) with the report, naming the deleted queue; or, if the deletion
    # came after the last confirm, it finished (both are the truth)
    stdout = out.decode()
    assert "Traceback" not in err.decode()
    if proc.returncode == 0:
        assert "imported 5000" in stdout
        return
    assert proc.returncode == 1, (stdout, err.decode())
    assert "'jobs.dlq' was deleted during the import" in stdout, stdout
    assert "resume with --skip" in stdout


@pytest.mark.slow
async def test_shovel_replay_that_loses_the_management_api_ends_with_a_report(
        connection, mgmt, settings, vhost):
    # Given 20,000 dead letters and a shovel replay whose management API goes through a proxy
    await setup_jobs(connection, vhost)
    ledger = await fresh_dead_letters(connection)
    with TcpProxy(("127.0.0.1", 15672)) as api:
        api_settings = replace(settings, management_url=f"http://127.0.0.1:{api.port}",
                               management_urls=())
        dlq = DeadLetterQueue(connection, None, api_settings, "jobs.dlq")
        task = asyncio.ensure_future(dlq.replay(via_shovel=True))
        # When the API goes away while the shovel moves the DLQ
        await wait_until(lambda: _at_least(connection, "jobs", 1), timeout=60, interval=0.005)
        api.cut()
        broke_at = time.monotonic()
        result = await asyncio.wait_for(task, ENDS_WITHIN)
        took = time.monotonic() - broke_at
    # Then the replay ends at once with a report saying the shovel goes on by itself
    print(f"\nshovel, API cut: ended {took:.1f}s after; {result.error}")
    assert took <= 15 and result.via == "shovel" and result.outcome != "ok"
    assert "management API" in (result.error or "") and "goes on" in (result.error or "")
    # And the shovel does finish by itself: every dead letter reaches "jobs", none lost
    await wait_until(lambda: _no_shovels(mgmt, vhost), timeout=60, what="the shovel ends")
    ledger.record_received(await take_all_ids(connection, "jobs"))
    ledger.record_received(await take_all_ids(connection, "jobs.dlq"))
    assert ledger.summary()["lost"] == 0 and ledger.summary()["unexpected"] == 0


async def _no_shovels(mgmt: Any, vhost: str) -> bool:
    return not await mgmt.shovel_parameters(vhost)


async def test_replay_whose_connection_the_broker_closes_ends_with_a_report(
        connection, mgmt, settings, vhost):
    """What a broker restart does to a client: ``connection.close`` (320 CONNECTION_FORCED)."""
    # Given 5,000 dead letters and a throttled replay on a connection of its own, by name
    await setup_jobs(connection, vhost)
    ledger = await fresh_dead_letters(connection, 5000)
    name = f"qw-test-replay-{vhost}"
    own = await connect(settings, client_properties={"connection_name": name})
    await wait_until(lambda: _named(mgmt, vhost, name), timeout=30, what="the connection listed")
    dlq = DeadLetterQueue(own, None, settings, "jobs.dlq", publish_connection=own)
    task = asyncio.ensure_future(dlq.replay(via_shovel=False, rate=2000))
    # When the broker closes that connection mid-way
    await wait_until(lambda: _at_least(connection, "jobs", 1000), timeout=30, interval=0.01)
    for conn in await mgmt.connections(vhost):
        if conn.get("user_provided_name") == name:
            await mgmt.close_connection(str(conn["name"]))
    closed_at = time.monotonic()
    result = await asyncio.wait_for(task, ENDS_WITHIN)
    took = time.monotonic() - closed_at
    # Then the replay ends at once, saying so; nothing is lost
    print(f"\nforced close: ended {took:.1f}s after; {result.error}")
    assert took <= 10 and result.error and "link" in result.error
    assert result.outcome == "partial" and 0 < result.replayed < 5000
    summary = await count_everything(connection, ledger)
    assert summary["lost"] == 0 and summary["unexpected"] == 0, summary
    assert summary["duplicated"] <= result.in_doubt, (summary, result.in_doubt)


async def _named(mgmt: Any, vhost: str, name: str) -> bool:
    return any(c.get("user_provided_name") == name for c in await mgmt.connections(vhost))
