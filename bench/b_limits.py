"""Queue-wide rate limits: what a limit costs the worker when it is not the bottleneck.

The queuewatch worker process (defaults) draining a no-op backlog with no limit vs with a
queue-wide ``rate_limit`` far above what it can reach (1,000,000 jobs/s: tokens carry 10,000
permits each, so about one ``basic.get`` per 10,000 jobs), runs interleaved (goal: >= 0.9x).
"""

from __future__ import annotations

from bench import peers, procs
from bench.amqp_tools import preload, time_drain
from bench.harness import Bench, Section, Target, compare, rate_row, verdict
from bench.stats import fmt_ratio, ratio
from queuewatch.config import Settings

#: Far above any rate one worker reaches.
HIGH_LIMIT = 1_000_000


def _drain(bench: Bench, count: int, limit: float | None):  # type: ignore[no-untyped-def]
    async def measure(settings: Settings) -> float:
        await peers.setup_queue("queuewatch", settings, 10)
        await preload(settings, peers.QUEUE, count, lambda i: peers.message("queuewatch", "noop", i))
        env = {"BENCH_RATE_LIMIT": str(limit)} if limit is not None else {}
        proc = peers.start_worker("queuewatch", settings, "noop",
                                  concurrency=bench.config.concurrency, prefetch=bench.prefetch,
                                  extra_env=env)
        with procs.running(proc):
            seconds = await time_drain(settings, peers.QUEUE, count, proc)
        return count / seconds
    return measure


async def run(bench: Bench) -> list[Section]:
    count = bench.size(30_000, 300)
    section = Section(
        key="limits-overhead",
        title=f"Queue-wide rate limit far above the achievable rate vs none ({count:,} no-op jobs)",
        measures=("The queuewatch worker process with its defaults draining a preloaded "
                  f"backlog, without a limit vs with rate_limit = {HIGH_LIMIT:,}/s (tokens on "
                  "the broker, refilled by the elected worker), runs interleaved."),
        columns=["system", "result", "ratio"],
    )
    results = await compare(bench, [("no-limit", _drain(bench, count, None)),
                                    ("high-limit", _drain(bench, count, HIGH_LIMIT))], "/s")
    off, why_off = results["no-limit"]
    on, why_on = results["high-limit"]
    section.rows.append(rate_row("no limit (baseline)", off, off, na=why_off))
    section.rows.append(rate_row(f"rate_limit = {HIGH_LIMIT:,}/s", on, off, na=why_on))
    r = ratio(on, off)
    section.targets.append(Target("worker no-op, high queue-wide limit vs none", ">= 0.9×",
                                  fmt_ratio(r), verdict(None if r is None else r >= 0.9),
                                  why_on or why_off))
    return [section]
