"""Delayed delivery: what the due queue (the last hop of a delayed job) costs.

``N`` jobs published with ``delay=1`` through the async producer; the measure is ``N`` over
the seconds from the first publish until all ``N`` are ready in their queue (exact counts by
passive declare). Contenders, runs interleaved: the topology as declared today (level 0 →
``queuewatch.delivery`` → ``queuewatch.due.Q`` → ``Q``) against the layout before due queues
(``queuewatch.delivery`` → ``Q``), rebuilt in the bench vhost by moving the one binding.
"""

from __future__ import annotations

import asyncio
import time

from bench.amqp_tools import DepthProbe, connect
from bench.harness import Bench, Measure, Section, compare, rate_row
from queuewatch.config import Settings
from queuewatch.topology import DELIVERY_EXCHANGE, QueueSpec, Topology, due_queue_name

QUEUE = "delayed"
LEVELS = 2


async def _declare(settings: Settings, *, due: bool) -> Topology:
    from queuewatch.broker.declare import declare_topology
    from queuewatch.envelope import H_TARGET

    topo = Topology(queues=(QueueSpec(QUEUE),), delay_levels=LEVELS)
    conn = await connect(settings)
    try:
        await declare_topology(conn, topo, settings.effective_vhost, None)
        if not due:
            channel = await conn.channel()
            match = {"x-match": "all", H_TARGET: QUEUE}
            await (await channel.get_queue(QUEUE)).bind(DELIVERY_EXCHANGE, arguments=match)
            await (await channel.get_queue(due_queue_name(QUEUE))).unbind(
                DELIVERY_EXCHANGE, arguments=match)
    finally:
        await conn.close()
    return topo


def _delayed(count: int, *, due: bool) -> Measure:
    async def measure(settings: Settings) -> float:
        from queuewatch.producer import AsyncProducer

        topo = await _declare(settings, due=due)
        probe = await DepthProbe.open(settings)
        try:
            start = time.perf_counter()
            async with AsyncProducer(settings, topo) as producer:
                for i in range(count):
                    await producer.submit(QUEUE, {"i": i}, delay=1)
                await producer.flush()
            deadline = start + 120
            while (await probe.counts(QUEUE))[0] < count:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{count} delayed jobs not all in {QUEUE} after 120 s")
                await asyncio.sleep(0.02)
            return count / (time.perf_counter() - start)
        finally:
            await probe.close()
    return measure


async def run(bench: Bench) -> list[Section]:
    count = bench.size(5_000, 200)
    section = Section(
        key="delay",
        title=f"Delayed delivery through a due queue ({count:,} jobs, delay 1 s)",
        measures=("Jobs published with delay=1 by the async producer (confirmed), until all "
                  "are ready in the job queue: jobs/s over that whole time, the 1 s delay "
                  "included. Baseline: the layout before due queues (the delivery exchange "
                  "bound to the job queue itself), rebuilt in the same vhost; runs interleaved."),
        columns=["layout", "result", "ratio"],
    )
    got = await compare(bench, [("direct", _delayed(count, due=False)),
                                ("due", _delayed(count, due=True))], "/s")
    base, why_base = got["direct"]
    due, why_due = got["due"]
    section.rows.append(rate_row("delivery → Q (before, baseline)", base, base, na=why_base))
    section.rows.append(rate_row("delivery → queuewatch.due.Q → Q (now)", due, base, na=why_due))
    return [section]
