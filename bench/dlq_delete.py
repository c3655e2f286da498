"""``dlq delete`` of every other dead letter: dead letters gone through per second. ::

    PYTHONPATH=<tree>/src:. .venv/bin/python -m bench.dlq_delete [COUNT [RUNS]] [--quorum]

Each run: a fresh vhost, ``COUNT`` persistent dead letters (a quorum DLQ with
``--quorum``), ``DeadLetterQueue.delete`` of every other job id, timed from the call to its
return (after the DLQ's kind is known: a new quorum queue's statistics, which tell its delivery
limit, take seconds to come). For an A/B of two trees, run it with each tree's ``src`` first on ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aio_pika

from bench import peers
from bench.amqp_tools import preload, redeclare_quorum
from bench.b_replay import DLQ, dead_letter, open_dlq
from bench.harness import session
from queuewatch.config import Settings


async def delete_rate(settings: Settings, count: int, quorum: bool) -> float:
    await peers.setup_queue("queuewatch", settings)
    if quorum:
        await redeclare_quorum(settings, DLQ)
    ids: list[str] = []

    def make(i: int) -> aio_pika.Message:
        message = dead_letter(i)
        ids.append(str(message.message_id))
        return message

    await preload(settings, DLQ, count, make)
    async with open_dlq(settings) as dlq:
        await dlq.kind()  # not timed: a new quorum queue's statistics take seconds
        t0 = time.perf_counter()
        removed = await dlq.delete(ids[::2])
        elapsed = time.perf_counter() - t0
    if len(removed) != len(ids[::2]):
        raise RuntimeError(f"{len(removed)} removed where {len(ids[::2])} were asked for")
    return count / elapsed


async def main(count: int, runs: int, quorum: bool) -> None:
    async with session() as (_settings, _mgmt, bench):
        for _ in range(runs):
            async with bench.vhost("delete") as st:
                rate = await delete_rate(st, count, quorum)
            print(f"{'quorum' if quorum else 'classic'} DLQ: delete of every other one of "
                  f"{count:,}: {rate:,.0f}/s", flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 20_000, int(args[1]) if len(args) > 1 else 1,
                     "--quorum" in sys.argv[1:]))
