"""A filtered replay (``--error-type``, ``--reason``) moved by the broker: a shovel through
header bindings that select exactly what the filter selects. Ledger: what matches arrives
once, nothing is lost, what does not match stays in the DLQ in its order, and the dry run
counts what is replayed."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest

from queuewatch import envelope as env
from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue
from queuewatch.dlq.held import MovedBack
from queuewatch.dlq.shovel import (
    SPLIT_PREFETCH,
    SRC_PREFETCH,
    ReplayInProgress,
    ensure_not_busy,
    sweep,
)
from queuewatch.dlq.shovelrun import not_running
from queuewatch.topology import QueueSpec
from tests.helpers import Ledger, declare, depth, wait_until
from tests.integration.test_dlq_kill import cli_env, replay_command
from tests.integration.test_dlq_kinds import declare_quorum
from tests.integration.test_dlq_shovel import replay_exchanges
from tests.integration.test_dlq_support import (
    dead_headers,
    drain_ids,
    publish_dead_letters,
    setup_jobs,
)

TIMEOUTS = DeadLetterFilter(error_type="TimeoutError")


def half_timeouts(i: int) -> dict[str, object]:
    """Every other dead letter a timeout (some with a module: the last dotted part counts)."""
    if i % 2:
        return dead_headers("jobs", error_type="ValueError")
    return dead_headers("jobs", error_type="asyncio.TimeoutError" if i % 10 == 0
                        else "TimeoutError")


async def test_half_match_moved_by_the_broker_arrive_once_and_the_rest_keeps_its_order(
        connection, mgmt, settings, vhost):
    # Given 2,000 dead letters of "jobs", half of them timeouts
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 2000, headers=half_timeouts)
    matching = [ids[i] for i in range(0, 2000, 2)]
    rest = [ids[i] for i in range(1, 2000, 2)]
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When the timeouts are replayed (the broker moving them)
    result = await dlq.replay(TIMEOUTS)
    # Then all of them were, by the shovel
    assert (result.replayed, result.via) == (1000, "shovel")
    assert (result.scanned, result.matched, result.outcome) == (2000, 1000, "ok")
    # And every timeout arrived once, none lost, in DLQ order
    ledger = Ledger()
    ledger.sent.update(matching)
    ledger.confirmed.update(matching)
    received = await drain_ids(connection, "jobs")
    ledger.record_received(received)
    assert ledger.summary()["lost"] == 0 and ledger.summary()["duplicated"] == 0
    assert not ledger.unexpected and received == matching
    # And the others stay in the DLQ in their order
    page = await dlq.peek(0, 1000)
    assert [d.job_id for d in page.items] == rest
    # And a dry run now counts nothing more to replay
    assert (await dlq.replay(TIMEOUTS, dry_run=True)).replayed == 0
    assert await replay_exchanges(mgmt, vhost) == []


@pytest.mark.parametrize(("dlq_kind", "jobs_kind", "step", "prefetch"), [
    ("classic", "classic", 2, SPLIT_PREFETCH),
    ("classic", "classic", 5, SPLIT_PREFETCH),
    ("classic", "classic", 1, SRC_PREFETCH),
    ("quorum", "classic", 1, SRC_PREFETCH),
    ("quorum", "classic", 2, SPLIT_PREFETCH),
    ("classic", "quorum", 2, SPLIT_PREFETCH),
    ("quorum", "quorum", 5, SPLIT_PREFETCH)])
async def test_the_shovel_prefetch_and_where_dead_letters_held_back_keep_the_replay_exact(
        connection, mgmt, settings, vhost, dlq_kind, jobs_kind, step, prefetch):
    # Given 3,000 dead letters of "jobs", one in ``step`` a timeout, with a classic or a
    # quorum DLQ and job queue
    await given_kinds(connection, vhost, dlq_kind, jobs_kind)
    ids = await publish_dead_letters(connection, "jobs", 3000, headers=lambda i: dead_headers(
        "jobs", error_type="ValueError" if i % step else "TimeoutError"))
    matching = ids[::step]
    rest = [i for i in ids if i not in set(matching)]
    shovels = record_shovels(mgmt)
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When the timeouts are replayed (the automatic choice of path)
    result = await dlq.replay(TIMEOUTS)
    # Then the broker moved them (a shallow prefetch on a DLQ taking a quarter or more back)
    assert shovels[0]["src-prefetch-count"] == prefetch
    assert (result.via, result.replayed, result.outcome) == ("shovel", len(matching), "ok")
    # And what it held back went straight back into the DLQ between classic queues, else
    # to a queue of its own, moved back by a second shovel after the first
    apart = "quorum" in (dlq_kind, jobs_kind) and bool(rest)
    assert [(s["src-queue"], s["dest-queue"]) for s in shovels[1:]] == (
        [(held_queue_of(shovels[0]), "jobs.dlq")] if apart else [])
    # And every timeout arrived once, in DLQ order; the rest stays, once, in its order
    assert await drain_ids(connection, "jobs") == matching
    left = (await dlq.peek(0, 3000 + prefetch)).items
    extra = len(left) - len(rest)
    assert [d.job_id for d in left[extra:]] == rest
    # except dead letters the shovel gave back at its end although it had moved them (its
    # last acks lost as it closed: 21 to 181 under disk load, from classic and quorum DLQs):
    # at the DLQ's head, redelivered, at most the prefetch, and counted in doubt
    if extra:
        print(f"{extra} dead letters given back at the DLQ's head, {result.in_doubt} in doubt")
        assert 0 < extra <= result.in_doubt <= prefetch
        assert all(d.redelivered and d.job_id in set(ids) for d in left[:extra])
    assert await replay_leftovers(mgmt, vhost) == []


async def given_kinds(connection, vhost, dlq_kind: str, jobs_kind: str) -> None:  # type: ignore[no-untyped-def]
    """"jobs" and "jobs.dlq", each a classic or a quorum queue."""
    await declare(connection, vhost, QueueSpec("jobs", max_priority=0, queue_type=jobs_kind),
                  delay_levels=1)
    if dlq_kind == "quorum":
        channel = await connection.channel()
        await channel.queue_delete("jobs.dlq")
        await channel.close()
        await declare_quorum(connection, "jobs.dlq")


def record_shovels(mgmt) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The definitions of the shovels created through ``mgmt`` from now on, in order."""
    shovels: list[dict[str, Any]] = []
    put_shovel = mgmt.put_shovel

    async def seen(vhost: str, name: str, value: dict[str, Any]) -> None:
        shovels.append(value)
        await put_shovel(vhost, name, value)

    mgmt.put_shovel = seen
    return shovels


def held_queue_of(shovel: dict[str, Any]) -> str:
    """The held queue of the replay whose (first) shovel is ``shovel``."""
    return str(shovel["dest-exchange"]) + ".held"


async def replay_leftovers(mgmt, vhost) -> list[str]:  # type: ignore[no-untyped-def]
    """Replay exchanges, queues and shovels still there."""
    queues = [x["name"] for x in await mgmt.queues(vhost, columns=("name",))
              if x["name"].startswith(env.REPLAY_EXCHANGE_PREFIX)]
    shovels = [p["name"] for p in await mgmt.shovel_parameters(vhost)]
    return [*await replay_exchanges(mgmt, vhost), *queues, *shovels]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cancelled", "killed", "killed moving back"])
async def test_a_shovel_replay_of_a_quorum_dlq_is_exact_when_cancelled_or_killed(
        connection, mgmt, settings, vhost, how):
    # Given 20,000 dead letters of "jobs" in a quorum DLQ, half of them timeouts
    ids, matching, dlq = await half_of_20000(connection, mgmt, settings, vhost, "quorum")
    # When the replay is cancelled, or its process killed, while its first shovel moves
    # them (a cancelled replay starts moving back what it held apart; a killed one cannot)
    if how == "cancelled":
        task = await replay_moving(connection, dlq)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        proc = await asyncio.create_subprocess_exec(
            *replay_command(settings, "--error-type", "TimeoutError", "--via-shovel"),
            env=cli_env(settings), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        if how == "killed":
            await wait_until(lambda: _moving(connection), timeout=20, what="the shovel moving")
        else:  # its second shovel moves what the first held back to the DLQ
            await wait_until(lambda: _moving_back(mgmt, vhost), timeout=60, interval=0.02,
                             what="the second shovel")
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        if how == "killed moving back":  # while it goes on, the DLQ is busy
            refused, stuck = await busy_while_moving_back(mgmt, vhost)
            assert refused > 0 or stuck
            if stuck:  # the kill landed as it was created: the next sweep repairs it
                print("the second shovel stayed defined with no shovel running: swept")
                assert [m.count for m in await sweep(connection, mgmt, vhost)] != []
    await wait_until(lambda: _no_replay_shovel(mgmt, vhost), timeout=60,
                     what="the shovels to end")
    if how == "killed moving back":
        # the second shovel went on by itself: every timeout replayed, the rest back in the
        # DLQ; only the replay's (empty) queue and exchanges are left for the next sweep
        assert await depth(connection, "jobs") == 10_000
        # (plus, from this quorum DLQ, what the first shovel gave back at its end although
        # republished: 181 in one CI run, within its prefetch; docs/dlq.md)
        assert 10_000 <= await depth(connection, "jobs.dlq") <= 10_000 + SPLIT_PREFETCH
        assert await dlq.held_elsewhere() == []
        assert stuck or await replay_leftovers(mgmt, vhost) != []
    else:
        assert 0 < await depth(connection, "jobs") <= 10_000
    # And, killed, what it held back waits in its own queue, and `dlq list` says where
    if how == "killed":
        [(held, count)] = await dlq.held_elsewhere()
        assert count == await depth(connection, held) > 0
        listed = await asyncio.create_subprocess_exec(
            *replay_command(settings)[:3], "dlq", "list", "jobs", "--json", "--vhost",
            settings.effective_vhost, env=cli_env(settings), stdout=asyncio.subprocess.PIPE)
        out, _ = await listed.communicate()
        assert json.loads(out)["held_elsewhere"] == [{"queue": held, "count": count}]
    # Then a second replay first moves back what is still held apart (the CLI says so, on
    # stderr), and once it is done every timeout is in "jobs" and every other dead letter
    # in the DLQ, none lost, with nothing of either replay left behind
    if how == "killed":
        again = await asyncio.create_subprocess_exec(
            *replay_command(settings, "--error-type", "TimeoutError", "--via-shovel", "--json"),
            env=cli_env(settings), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await again.communicate()
        assert again.returncode == 0, err.decode()
        assert json.loads(out)["outcome"] == "ok"
        said = f"queuewatch: {MovedBack(held, 'jobs.dlq', count).describe()}"
        assert said in err.decode().splitlines(), err.decode()
    else:
        result = await dlq.replay(TIMEOUTS, via_shovel=True)
        assert result.outcome == "ok" and dlq.moved_back == []
    moved = await drain_ids(connection, "jobs")
    left = await drain_ids(connection, "jobs.dlq")
    assert set(moved) == matching and set(left) == set(ids) - matching
    assert await replay_leftovers(mgmt, vhost) == [] and await dlq.held_elsewhere() == []
    # And at most a shovel's prefetch twice. Deleting a running shovel (the cancel) gives
    # back what it had not acked, republished or not. Where the shovel ended by itself
    # (killed) each was once in every local run, but one CI run (2 xdist workers) had 91
    # twice after a kill; the cause is not found, so the bound is the prefetch there too
    twice = len(moved) + len(left) - len(ids)
    print(f"{how}: {twice} dead letters twice ({len(moved) - len(set(moved))} in the job "
          f"queue, {len(left) - len(set(left))} in the DLQ)")
    assert 0 <= twice <= SPLIT_PREFETCH


async def _no_replay_shovel(mgmt, vhost) -> bool:  # type: ignore[no-untyped-def]
    return not await mgmt.shovel_parameters(vhost)


async def busy_while_moving_back(mgmt, vhost) -> tuple[int, bool]:  # type: ignore[no-untyped-def]
    """How many times a destructive action was refused (the busy check) while the second
    shovel ran, seen there before and after; fails if one was let through then. And
    whether the second shovel stayed defined with no shovel running (the kill landed while
    the broker answered its creation; test_dlq_shovel_not_running makes that on purpose)."""
    refused = 0
    deadline = asyncio.get_running_loop().time() + 60
    while await _moving_back(mgmt, vhost):
        if await not_running(mgmt, vhost, [p["name"] for p in await mgmt.shovel_parameters(vhost)]):
            return refused, True
        assert asyncio.get_running_loop().time() < deadline, "the second shovel did not end"
        try:
            await ensure_not_busy(mgmt, vhost, "jobs.dlq")
        except ReplayInProgress as exc:
            assert "-back" in str(exc)
            refused += 1
        else:
            assert not await _moving_back(mgmt, vhost), "busy check passed while moving back"
        await asyncio.sleep(0.05)
    return refused, False


async def _moving_back(mgmt, vhost) -> bool:  # type: ignore[no-untyped-def]
    return any(str(p["name"]).endswith("-back") for p in await mgmt.shovel_parameters(vhost))


async def test_what_the_broker_cannot_judge_is_looked_at_one_by_one(
        connection, mgmt, settings, vhost):
    # Given timeouts and other errors, among them a timeout parked before the worker wrote
    # the plain headers, one at the replay limit, and one of a reason in another case
    await setup_jobs(connection, vhost)
    old, poison = 301, 600

    def headers(i: int) -> dict[str, object]:
        if i == old:
            return dead_headers("jobs", error_type="TimeoutError", plain=False)
        if i == poison:
            return dead_headers("jobs", error_type="TimeoutError", replay_count=3)
        return half_timeouts(i)

    ids = await publish_dead_letters(connection, "jobs", 1200, headers=headers)
    should = {ids[i] for i in range(0, 1200, 2) if i != poison} | {ids[old]}
    stays = [ids[i] for i in range(1200) if ids[i] not in should]
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When the timeouts are replayed through the shovel
    dry = await dlq.replay(TIMEOUTS, dry_run=True)
    result = await dlq.replay(TIMEOUTS, via_shovel=True)
    # Then the broker moved what it could judge, the per-message replay the old one, and
    # the one at the limit stays, reported
    assert dry.replayed == result.replayed == len(should)
    assert result.count("replay-limit") == 1 and result.skipped[0].job_id == ids[poison]
    received = await drain_ids(connection, "jobs")
    assert sorted(received) == sorted(should)
    # And what stays keeps its order
    assert [d.job_id for d in (await dlq.peek(0, 1200)).items] == stays


async def test_a_filter_on_reason_and_the_automatic_choice(connection, mgmt, settings, vhost):
    await setup_jobs(connection, vhost)
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # A reason filter (any case) on 1,200 that mostly match: the shovel by itself
    await publish_dead_letters(connection, "jobs", 1200, headers=lambda i: dead_headers(
        "jobs", reason="timeout" if i % 4 else "failed"))
    result = await dlq.replay(DeadLetterFilter(reason="TIMEOUT"))
    assert (result.via, result.replayed) == ("shovel", 900)
    assert await depth(connection, "jobs.dlq") == 300
    # None matching at the head (the 300 left): the per-message replay reads the DLQ
    # without moving what it leaves
    await publish_dead_letters(connection, "jobs", 1200, headers=lambda i: dead_headers(
        "jobs", error_type="KeyError" if i % 10 == 0 else "ValueError"))
    result = await dlq.replay(DeadLetterFilter(error_type="KeyError"))
    assert (result.via, result.replayed) == ("messages", 120)
    # A few matching at the head (1 in 25 of a fresh DLQ): the shovel, which is still the
    # quicker there (bench.replay_share)
    await dlq.purge()
    await drain_ids(connection, "jobs")  # (what the two replays above sent)
    ids = await publish_dead_letters(connection, "jobs", 1000, headers=lambda i: dead_headers(
        "jobs", error_type="KeyError" if i % 25 == 0 else "ValueError"))
    result = await dlq.replay(DeadLetterFilter(error_type="KeyError"))
    assert (result.via, result.replayed) == ("shovel", 40)
    assert sorted(await drain_ids(connection, "jobs")) == sorted(ids[::25])
    assert await depth(connection, "jobs.dlq") == 960


@pytest.mark.slow
async def test_a_filtered_shovel_replay_cancelled_mid_way_loses_nothing(
        connection, mgmt, settings, vhost):
    # Given 20,000 dead letters, half of them timeouts
    ids, matching, dlq = await half_of_20000(connection, mgmt, settings, vhost, "classic")
    # When the filtered replay is cancelled while the shovel moves them
    task = await replay_moving(connection, dlq)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Then only timeouts reached "jobs", and every dead letter is in one of the two
    moved = await drain_ids(connection, "jobs")
    assert set(moved) <= matching and 0 < len(moved) < 10_000
    ledger = Ledger()
    ledger.sent.update(ids)
    ledger.confirmed.update(ids)
    ledger.record_received([*moved, *await drain_ids(connection, "jobs.dlq")])
    assert ledger.summary()["lost"] == 0
    assert await replay_exchanges(mgmt, vhost) == []


async def half_of_20000(connection, mgmt, settings, vhost, dlq_kind: str):  # type: ignore[no-untyped-def]
    """20,000 dead letters of "jobs" (a classic queue) in a classic or quorum DLQ, every
    other one a timeout: (their ids, the timeouts' ids, the DLQ)."""
    await given_kinds(connection, vhost, dlq_kind, "classic")
    ids = await publish_dead_letters(connection, "jobs", 20_000, headers=half_timeouts,
                                     batch=1000)
    return ids, {ids[i] for i in range(0, 20_000, 2)}, DeadLetterQueue(
        connection, mgmt, settings, "jobs.dlq")


async def replay_moving(connection, dlq):  # type: ignore[no-untyped-def]
    """The timeouts' replay, through the shovel, started and moving."""
    task = asyncio.create_task(dlq.replay(TIMEOUTS, via_shovel=True))
    await wait_until(lambda: _moving(connection), timeout=20, what="the shovel moving")
    return task


async def _moving(connection) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, "jobs") > 0


@pytest.mark.slow
async def test_dead_letters_arriving_during_a_quorum_shovel_replay_are_kept_or_in_doubt(
        connection, mgmt, settings, vhost):
    # Given 20,000 dead letters of "jobs" in a quorum DLQ, half of them timeouts
    ids, matching, dlq = await half_of_20000(connection, mgmt, settings, vhost, "quorum")
    # When more dead letters keep arriving while the timeouts are replayed by the broker
    task = await replay_moving(connection, dlq)
    more: list[str] = []
    while not task.done():
        more += await publish_dead_letters(connection, "jobs", 50, headers=half_timeouts,
                                           batch=50)
    result = await task
    # Then every timeout there at the start was replayed (and at most some that arrived,
    # see below), each once, and the report counts them, short by at most what it calls
    # in doubt (originals given back after their republish are not counted)
    moved = await drain_ids(connection, "jobs")
    left = await drain_ids(connection, "jobs.dlq")
    assert matching <= set(moved) and set(moved) - matching <= set(more)
    assert len(moved) == len(set(moved))
    assert len(moved) - result.in_doubt <= result.replayed <= len(moved)
    # And nothing was lost: the others, and all that arrived, are in the DLQ (or replayed)
    assert (set(ids) - matching) | set(more) <= set(left) | set(moved)
    # And what is both replayed and in the DLQ (the shovel's count of acks ran out on
    # arrivals before the last originals: it gave those back) is within what the report
    # calls in doubt
    both = len(moved) + len(left) - len(set(moved) | set(left))
    print(f"{len(more)} arrived during the replay, {both} in both, {result.in_doubt} in doubt")
    assert len(more) > 0 and both <= result.in_doubt
