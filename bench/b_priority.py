"""Priority queue cost: draining a backlog from a queue with x-max-priority 0 / 4 / 10."""

from __future__ import annotations

from bench.drain import rate_measure
from bench.harness import Bench, Section, compare, rate_row


async def run(bench: Bench) -> list[Section]:
    count = bench.size(10_000, 300)
    section = Section(
        key="priority",
        title=f"Priority queue cost ({count:,} no-op jobs in the backlog)",
        measures=(
            "The queuewatch worker (concurrency "
            f"{bench.config.concurrency}, prefetch {bench.prefetch}) draining a preloaded "
            "backlog whose jobs cycle through every priority level, from a queue declared "
            "with x-max-priority 0 (none), 4 and 10 (queuewatch's default). Ratio: against "
            "no priorities (runs interleaved)."
        ),
        columns=["x-max-priority", "result", "ratio"],
    )
    levels = (0, 10) if bench.quick else (0, 4, 10)
    got = await compare(bench, [
        (f"priority-{level}", rate_measure(bench, "queuewatch", "noop", count,
                                           max_priority=level or None, priorities=True))
        for level in levels], "/s")
    results = [(level, *got[f"priority-{level}"]) for level in levels]
    base = results[0][1]
    for level, value, why in results:
        label = "0 (no priorities, baseline)" if level == 0 else str(level)
        section.rows.append(rate_row(label, value, base, na=why))
    return [section]
