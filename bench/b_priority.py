"""Priority queue cost: draining a backlog from a queue with x-max-priority 0 / 4 / 10."""

from __future__ import annotations

from bench.drain import drain_rate
from bench.harness import Bench, Section, measure_or_na, rate_row
from bench.peers import check_available
from bench.stats import Stat
from queuewatch.config import Settings


async def run(bench: Bench) -> list[Section]:
    count = bench.size(20_000, 300)
    section = Section(
        key="priority",
        title=f"Priority queue cost ({count:,} no-op jobs in the backlog)",
        measures=(
            "The queuewatch worker (concurrency "
            f"{bench.config.concurrency}, prefetch {bench.prefetch}) draining a preloaded "
            "backlog whose jobs cycle through every priority level, from a queue declared "
            "with x-max-priority 0 (none), 4 and 10 (queuewatch's default). Ratio: against "
            "no priorities."
        ),
        columns=["x-max-priority", "result", "ratio"],
    )
    results: list[tuple[int, Stat | None, str]] = []
    for level in (0, 10) if bench.quick else (0, 4, 10):
        async def measure(settings: Settings, level: int = level) -> float:
            check_available("queuewatch")
            return await drain_rate(
                settings, "queuewatch", "noop", count, concurrency=bench.config.concurrency,
                prefetch=bench.prefetch, max_priority=level or None, priorities=True,
            )
        value, why = await measure_or_na(bench, f"priority-{level}", "/s", measure)
        results.append((level, value, why))
    base = results[0][1]
    for level, value, why in results:
        label = "0 (no priorities, baseline)" if level == 0 else str(level)
        section.rows.append(rate_row(label, value, base, na=why))
    return [section]
