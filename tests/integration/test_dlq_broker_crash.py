"""A broker that crashes under a replay (kill -9 of a throwaway node, then restarted): no
dead letter is lost, and the report does not promise the in-doubt bound that only holds
for a cut link or a clean stop (found in a QA pass, 2026-12-01: every one of the 4,054
dead letters replayed before the kill was back in the DLQ after the restart, while the
replay had reported 1,251 in doubt; acks the broker had not written to disk are lost)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from queuewatch.broker.connect import connect
from tests.helpers import Ledger, depth, wait_until
from tests.integration.test_dlq_support import QUEUEWATCH, publish_many_dead_letters, take_all_ids
from tests.nodes import Node, jobs_on, rabbitmq_installed, running_node

N = 20_000


async def _at_least(connection, queue: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        return await depth(connection, queue) >= n
    except Exception:  # the node is going down
        return False


@pytest.fixture
def node_with_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A throwaway node with its own management API: a replay reads the job queue's limits
    there (without it every dead letter would be kept 'unchecked', none replayed)."""
    if not rabbitmq_installed():
        pytest.skip("rabbitmq-server is not installed here")
    with running_node(tmp_path_factory.mktemp("rmq"), management=True) as node:
        yield node


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_broker_killed_under_a_replay_loses_nothing_and_the_report_says_acks_may_be_lost(
        node_with_api: Node, tmp_path):
    # Given 20,000 dead letters on a throwaway node, and `queuewatch dlq replay` on it
    node = node_with_api
    settings, _topo = await jobs_on(node, tmp_path)
    conn = await connect(settings)
    ids = await publish_many_dead_letters(conn, "jobs", N)
    ledger = Ledger(sent=set(ids), confirmed=set(ids))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    env.update(QUEUEWATCH_AMQP_URL=node.amqp_url, QUEUEWATCH_STATE_DIR=str(tmp_path),
               QUEUEWATCH_MANAGEMENT_URL=node.management_url)  # its own, never the shared node's
    proc = await asyncio.create_subprocess_exec(
        QUEUEWATCH, "dlq", "replay", "jobs", "--yes", "--rate", "5000", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    # When the node is killed (SIGKILL) mid-way, then started again
    try:
        await wait_until(lambda: _at_least(conn, "jobs", 4000), timeout=60, interval=0.01)
    except AssertionError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"the replay did not get going:\n{out.decode()}{err.decode()}") from None
    await asyncio.to_thread(node.kill9)
    killed = time.monotonic()
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    took = time.monotonic() - killed
    await asyncio.to_thread(node.restart)
    # Then the replay ended at once with exit 1, saying what a crash may have undone
    stdout = out.decode()
    print(f"\nended {took:.1f}s after the kill, exit {proc.returncode}\n{stdout}")
    assert proc.returncode == 1 and "STOPPED EARLY" in stdout, (stdout, err.decode())
    assert "RabbitMQ itself crashed" in stdout and "Traceback" not in err.decode(), stdout
    # And after the restart every dead letter is in "jobs" or the DLQ: none lost
    conn = await connect(settings)
    ledger.record_received(await take_all_ids(conn, "jobs"))
    ledger.record_received(await take_all_ids(conn, "jobs.dlq"))
    summary = ledger.summary()
    print(summary)
    assert summary["lost"] == 0 and summary["unexpected"] == 0, summary
    await conn.close()
