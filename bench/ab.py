"""A/B of the no-op worker's drain rate: two or more versions of the code (or settings), in
interleaved rounds, each in a fresh vhost, beside raw aio-pika or Dramatiq if asked.

    git worktree add /tmp/before HEAD~1
    python -m bench.ab "before=/tmp/before/src,after=src" --jobs 20000 --rounds 3
    python -m bench.ab "on=src,off=src;BENCH_IDEMPOTENCY=0,raw=raw,dramatiq=dramatiq"
    python -m bench.ab "p1=src;PROCS=1,p2=src;PROCS=2"

Each contender is ``name=SRC[;VAR=VALUE...]``: SRC is a ``src`` directory to import
queuewatch from (or ``raw`` / ``dramatiq``); the variables go to the worker's environment
(``BENCH_IDEMPOTENCY``, ``BENCH_JOB_EVENTS``, ``BENCH_TELEMETRY``, ``BENCH_PREFETCH``), and
``PROCS=N`` runs ``queuewatch worker --processes N``. Prints each round and the medians, as
ratios against the first contender. Concurrency 10, prefetch 100, as the worker family.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

from bench import peers, procs
from bench.amqp_tools import preload, time_drain
from bench.harness import Bench, BenchConfig, make_settings
from queuewatch.broker.management import ManagementClient


def parse(spec: str) -> list[tuple[str, str, dict[str, str]]]:
    out = []
    for item in spec.split(","):
        name, _, rest = item.partition("=")
        src, *flags = rest.split(";")
        if not name or not src:
            raise SystemExit(f"bad contender {item!r}: expected name=SRC[;VAR=VALUE...]")
        out.append((name, src, dict(f.split("=", 1) for f in flags)))
    return out


async def main(contenders: list[tuple[str, str, dict[str, str]]], jobs: int, rounds: int) -> None:
    settings = make_settings()
    mgmt = ManagementClient(settings)
    bench = Bench(settings, mgmt, BenchConfig(runs=1))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    try:
        for r in range(rounds):
            for name, src, flags in contenders:
                system = src if src in ("raw", "dramatiq") else "queuewatch"
                env = dict(flags)
                processes = int(env.pop("PROCS", "0")) or None
                if system == "queuewatch":
                    env["BENCH_QW_SRC"] = str(Path(src).resolve())
                async with bench.vhost(f"ab-{name}") as st:
                    await peers.setup_queue(system, st)
                    await preload(st, peers.QUEUE, jobs, lambda i, s=system: peers.message(s, "noop", i))
                    proc = peers.start_worker(system, st, "noop", concurrency=10, prefetch=100,
                                              extra_env=env, processes=processes)
                    with procs.running(proc):
                        seconds = await time_drain(st, peers.QUEUE, jobs, proc)
                rates[name].append(jobs / seconds)
                print(f"round {r + 1} {name}: {jobs / seconds:,.0f}/s", flush=True)
    finally:
        await mgmt.aclose()
        procs.stop_all()
    base = statistics.median(rates[contenders[0][0]])
    for name, values in rates.items():
        m = statistics.median(values)
        print(f"{name}: median {m:,.0f}/s ({min(values):,.0f}–{max(values):,.0f})  {m / base:.2f}×")


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    p.add_argument("contenders")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    procs.install_handlers()
    asyncio.run(main(parse(a.contenders), a.jobs, a.rounds))
