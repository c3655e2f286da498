"""Where a filtered replay's two paths cross: the shovel underneath (the broker moves every
dead letter, the held back ones back into the DLQ) against the per-message replay (Python
reads every dead letter and republishes the matching ones), as the share of matching dead
letters falls. It sets :data:`queuewatch.dlq.shovel.MIN_SHARE`. ::

    PYTHONPATH=. .venv/bin/python -m bench.replay_share [COUNT [RUNS [SHARES]]]
        [--per-message | --vs-plain]
        [--quorum]

``SHARES``: comma-separated fractions (default ``0.01,0.02,0.05,0.2``). Each run: a fresh
vhost, ``COUNT`` persistent dead letters of which one in ``1/share`` is a timeout,
``replay(DeadLetterFilter(error_type="TimeoutError"), via_shovel=True|False)`` timed from
the call to its return; the two paths interleaved. Prints the rates (dead letters gone
through per second) and the ratio shovel / per-message.

``--per-message``: only the per-message path, with the CPU seconds Python and the broker
spent on each run (an A/B of two trees: run it with ``PYTHONPATH=<tree>/src:.`` for each).

``--quorum``: the DLQ is a quorum queue (declared again, empty, before the dead letters).

``--split-prefetch=N``: the shovel's prefetch on a DLQ that takes much back
(:data:`queuewatch.dlq.shovel.SPLIT_PREFETCH`) set to ``N`` for this run, to sweep it.

``--vs-plain``: the filtered replay as queuewatch chooses its path, beside a plain shovel
moving the whole DLQ (same size, same queue type) in the same round: the rates and the
ratio filtered / plain for each share (issue 16's "filtered replay vs the shovel"; an A/B
of two trees: run it with ``PYTHONPATH=<tree>/src:.`` for each, alternately).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import psutil

from bench import peers
from bench.amqp_tools import preload, redeclare_quorum
from bench.b_replay import DLQ, _depth, dead_letter, open_dlq, shovel_rate
from bench.harness import session
from queuewatch.broker.management import ManagementClient
from queuewatch.config import Settings
from queuewatch.dlq import DeadLetterFilter

QUORUM = "--quorum" in sys.argv[1:]
"""The DLQ is a quorum queue."""


async def replay_rate(settings: Settings, count: int, share: float, via_shovel: bool | None,
                      cpu: list[tuple[float, float]] | None = None) -> float:
    """Dead letters gone through per second by one filtered replay on a fresh DLQ
    (``cpu``: gets the CPU seconds of this process and of the broker during it)."""
    step = max(round(1 / share), 1)
    await peers.setup_queue("queuewatch", settings)
    if QUORUM:
        await redeclare_quorum(settings, DLQ)
    await preload(settings, DLQ, count, lambda i: dead_letter(
        i, "TimeoutError" if i % step == 0 else "ValueError"))
    matching = len(range(0, count, step))
    async with open_dlq(settings) as dlq:
        await dlq.kind()  # not timed: a new quorum queue's statistics take seconds
        own0, broker0 = cpu_seconds()
        t0 = time.perf_counter()
        result = await dlq.replay(DeadLetterFilter(error_type="TimeoutError"),
                                  via_shovel=via_shovel)
        elapsed = time.perf_counter() - t0
        own1, broker1 = cpu_seconds()
        if cpu is not None:
            cpu.append((own1 - own0, broker1 - broker0))
    await asyncio.sleep(0.5)  # acks in flight at the return reach the broker
    moved = await _depth(settings, peers.QUEUE)
    if (moved, result.replayed) != (matching, matching):
        raise RuntimeError(f"{moved} in the job queue, {result.replayed} reported replayed, "
                           f"where {matching} match")
    return count / elapsed


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of this process and of the broker's Erlang VMs (beam.smp)."""
    own = psutil.Process().cpu_times()
    broker = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "beam.smp":
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                broker += times.user + times.system
    return own.user + own.system, broker


async def per_message(count: int, runs: int, shares: list[float]) -> None:
    async with session() as (_settings, _mgmt, bench):
        for share in shares:
            for _ in range(runs):
                cpu: list[tuple[float, float]] = []
                async with bench.vhost("share") as st:
                    rate = await replay_rate(st, count, share, False, cpu)
                print(f"share {share:g}: per-message {rate:,.0f}/s, CPU: Python "
                      f"{cpu[0][0]:.1f} s, broker {cpu[0][1]:.1f} s", flush=True)


async def plain_rate(settings: Settings, count: int, mgmt: ManagementClient) -> float:
    """A plain shovel moving a DLQ of ``count`` dead letters (none filtered) as a whole."""
    await peers.setup_queue("queuewatch", settings)
    if QUORUM:
        await redeclare_quorum(settings, DLQ)
    await preload(settings, DLQ, count, lambda i: dead_letter(i, "TimeoutError"))
    return await shovel_rate(settings, count, mgmt)


async def vs_plain(count: int, runs: int, shares: list[float]) -> None:
    async with session() as (_settings, mgmt, bench):
        for _ in range(runs):
            async with bench.vhost("plain") as st:
                plain = await plain_rate(st, count, mgmt)
            row = [f"plain shovel {plain:,.0f}/s"]
            for share in shares:
                async with bench.vhost("share") as st:
                    rate = await replay_rate(st, count, share, None)
                row.append(f"{share:g}: {rate:,.0f}/s {rate / plain:.2f}x")
            print("  ".join(row), flush=True)


async def main(count: int, runs: int, shares: list[float]) -> None:
    async with session() as (_settings, _mgmt, bench):
        for share in shares:
            rates: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(runs):
                for via in (True, False):
                    async with bench.vhost("share") as st:
                        rates[via].append(await replay_rate(st, count, share, via))
            ratios = [a / b for a, b in zip(rates[True], rates[False], strict=True)]
            print(f"share {share:g}: shovel {[f'{x:,.0f}/s' for x in rates[True]]}  "
                  f"per-message {[f'{x:,.0f}/s' for x in rates[False]]}  "
                  f"shovel/per-message {[f'{r:.2f}' for r in ratios]}", flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    for opt in sys.argv[1:]:
        if opt.startswith("--split-prefetch="):
            from queuewatch.dlq import shovel
            shovel.SPLIT_PREFETCH = int(opt.split("=", 1)[1])
    run = per_message if "--per-message" in sys.argv[1:] else \
        vs_plain if "--vs-plain" in sys.argv[1:] else main
    asyncio.run(run(int(args[0]) if args else 20_000, int(args[1]) if len(args) > 1 else 2,
                     [float(x) for x in (args[2] if len(args) > 2 else "0.01,0.02,0.05,0.2")
                      .split(",")]))
