"""The broker's own cost of a filtered replay, with no Python in the loop: the shovel and
the exchanges queuewatch's filtered replay declares (:func:`queuewatch.dlq.split.declare`,
:func:`queuewatch.dlq.shovelrun.definition`, the prefetch :data:`queuewatch.dlq.shovel.
SPLIT_PREFETCH`), beside a plain shovel moving the whole DLQ, interleaved in fresh vhosts,
each timed from its creation until it removed itself, with the broker's CPU seconds (the
ceiling of issue 16 item 6 on this machine). ::

    PYTHONPATH=. .venv/bin/python -m bench.replay_bare [COUNT [RUNS]]

Every other dead letter is a timeout; the split replays the timeouts to the job queue and
holds the rest back into the DLQ, as ``dlq replay --error-type TimeoutError`` does between
two classic queues."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

from bench import peers
from bench.amqp_tools import DepthProbe, connect
from bench.b_replay import DLQ, SHOVEL_PREFETCH, _prepare
from bench.harness import session
from bench.replay_share import cpu_seconds
from queuewatch.broker.management import ManagementClient
from queuewatch.config import Settings
from queuewatch.dlq import DeadLetterFilter
from queuewatch.dlq.model import REPLAY_SHOVEL_PREFIX
from queuewatch.dlq.replay import ReplayOptions
from queuewatch.dlq.shovel import SPLIT_PREFETCH
from queuewatch.dlq.shovelrun import definition
from queuewatch.dlq.split import declare, exchange_names


async def until_gone(settings: Settings, mgmt: ManagementClient, name: str,
                     value: dict[str, Any]) -> tuple[float, float]:
    """Create the shovel; (seconds until it removed itself, broker CPU seconds meanwhile)."""
    vhost = settings.effective_vhost
    cpu0 = cpu_seconds()[1]
    t0 = time.perf_counter()
    await mgmt.put_shovel(vhost, name, value)
    while await mgmt.shovel_exists(vhost, name):
        await asyncio.sleep(0.02)
    return time.perf_counter() - t0, cpu_seconds()[1] - cpu0


async def plain(settings: Settings, count: int, mgmt: ManagementClient) -> tuple[float, float]:
    await _prepare(settings, count)
    value = definition(settings.effective_vhost, DLQ, SHOVEL_PREFETCH, dest_queue=peers.QUEUE)
    return await until_gone(settings, mgmt, "bench-plain-" + uuid.uuid4().hex[:6], value)


async def split(settings: Settings, count: int, mgmt: ManagementClient) -> tuple[float, float]:
    await _prepare(settings, count, half=True)
    name = REPLAY_SHOVEL_PREFIX + uuid.uuid4().hex[:12]
    conn = await connect(settings)
    try:
        opts = ReplayOptions(flt=DeadLetterFilter(error_type="TimeoutError"))
        await declare(conn, peers.QUEUE, name, opts, DLQ)
    finally:
        await conn.close()
    value = definition(settings.effective_vhost, DLQ, SPLIT_PREFETCH,
                       dest_exchange=exchange_names(name)[0], dest_exchange_key=peers.QUEUE)
    took = await until_gone(settings, mgmt, name, value)
    probe = await DepthProbe.open(settings)
    try:
        moved, left = (await probe.counts(peers.QUEUE))[0], (await probe.counts(DLQ))[0]
    finally:
        await probe.close()
    if moved != count // 2:
        raise RuntimeError(f"the split moved {moved} of the {count // 2} timeouts ({left} left)")
    return took


async def main(count: int, runs: int) -> None:
    ratios, cpus = [], []
    async with session() as (_settings, mgmt, bench):
        for _ in range(runs):
            async with bench.vhost("bare-plain") as st:
                p_s, p_cpu = await plain(st, count, mgmt)
            async with bench.vhost("bare-split") as st:
                s_s, s_cpu = await split(st, count, mgmt)
            ratios.append(p_s / s_s)
            cpus.append(s_cpu / p_cpu)
            print(f"plain {count / p_s:,.0f}/s (broker CPU {p_cpu:.1f} s)  split {count / s_s:,.0f}/s "
                  f"gone through (broker CPU {s_cpu:.1f} s)  ratio {p_s / s_s:.2f}x", flush=True)
    print(f"ratio split/plain: median {statistics.median(ratios):.2f}x "
          f"({min(ratios):.2f}-{max(ratios):.2f}); broker CPU split/plain: median "
          f"{statistics.median(cpus):.2f}x")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 5))
