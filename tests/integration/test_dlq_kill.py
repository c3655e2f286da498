"""Killing the replaying process at a random point loses nothing (Jepsen-style ledger)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys

import pytest

from tests.helpers import Ledger, depth, wait_until
from tests.integration.test_dlq_support import drain_ids, publish_dead_letters, setup_jobs

N = 10_000


def replay_command(settings, *extra: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [sys.executable, "-m", "queuewatch.cli.main", "dlq", "replay", "jobs", "--yes",
            "--vhost", settings.effective_vhost, *extra]


def cli_env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    env.update(QUEUEWATCH_AMQP_URL=settings.amqp_url, QUEUEWATCH_MANAGEMENT_URL=settings.management_url,
               QUEUEWATCH_STATE_DIR=str(settings.state_dir))
    return env


@pytest.mark.slow
async def test_replay_killed_at_random_point_loses_nothing(connection, settings, vhost):
    # Given 10,000 dead letters and a ledger of their ids
    await setup_jobs(connection, vhost)
    ledger = Ledger()
    ids = await publish_dead_letters(connection, "jobs", N)
    ledger.sent.update(ids)
    ledger.confirmed.update(ids)
    # When a replay process is SIGKILLed at a random point (throttled so the point is real)
    kill_at = random.randint(1000, N - 2000)
    proc = await asyncio.create_subprocess_exec(
        *replay_command(settings, "--rate", "4000"), env=cli_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await wait_until(lambda: _at_least(connection, "jobs", kill_at), timeout=30, interval=0.01,
                     what=f"{kill_at} replayed")
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    moved_before_rerun = await depth(connection, "jobs")
    assert 0 < moved_before_rerun < N, "the kill must land mid-way"
    # And the replay is run again to completion
    rerun = await asyncio.create_subprocess_exec(
        *replay_command(settings), env=cli_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(rerun.communicate(), 60)
    assert rerun.returncode == 0, (out, err)
    # Then every dead letter is in "jobs": 0 lost, 0 unexpected (duplicates are allowed)
    ledger.record_received(await drain_ids(connection, "jobs"))
    ledger.record_received(await drain_ids(connection, "jobs.dlq"))
    summary = ledger.summary()
    print(f"kill at >= {kill_at}, moved before re-run {moved_before_rerun}: {summary}")
    assert summary["lost"] == 0 and summary["unexpected"] == 0, summary
    assert summary["received_unique"] == N


async def _at_least(connection, queue: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, queue) >= n
