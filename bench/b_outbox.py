"""The producer outbox: how fast publishes are taken into the local spool while the broker
is unreachable, against confirmed publishes to a live broker (the baseline).

Same publishing pattern for all: chunks of 100 concurrent ``publish`` calls (``gather``),
one chunk after the other; plus one-at-a-time awaits into the spool, where every publish
pays its own commit (fsync on, then off).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import peers
from bench.harness import Bench, Section, Target, compare, rate_row, verdict
from bench.stats import fmt_ratio, ratio
from queuewatch.config import Settings
from queuewatch.producer import AsyncProducer

CHUNK = 100
#: An address where nothing listens: the broker "is down".
NOWHERE = "amqp://guest:guest@127.0.0.1:1/"


def _measure(count: int, *, spool: bool, fsync: bool = True, chunk: int = CHUNK):  # type: ignore[no-untyped-def]
    async def measure(settings: Settings) -> float:
        with tempfile.TemporaryDirectory(prefix="qwbench-outbox-") as tmp:
            if spool:
                settings = replace(settings, amqp_url=NOWHERE, amqp_urls=(), outbox_dir=Path(tmp),
                                   outbox_fsync=fsync, job_events=False)
            else:
                await peers.setup_queue("queuewatch", settings, 10)
                settings = replace(settings, job_events=False)
            producer = AsyncProducer(settings, peers.BENCH_DELAY_LEVELS, connection_name="bench")
            await producer.connect()
            try:
                t0 = time.perf_counter()
                for k in range(0, count, chunk):
                    n = min(chunk, count - k)
                    got = await asyncio.gather(*(producer.publish(peers.QUEUE, {"i": k + i})
                                                 for i in range(n)))
                    if spool and not all(p.spooled for p in got):
                        raise RuntimeError("a publish was not spooled")
                elapsed = time.perf_counter() - t0
            finally:
                await producer.close()
            return count / elapsed
    return measure


async def run(bench: Bench) -> list[Section]:
    count = bench.size(10_000, 500)
    one_by_one = bench.size(1_000, 100)
    section = Section(
        key="outbox",
        title=f"Producer outbox: spooled publishes vs confirmed publishes ({count:,} jobs)",
        measures=("AsyncProducer publishing in chunks of 100 concurrent calls: to a live "
                  "broker with confirms (baseline), and with the broker unreachable into the "
                  "outbox's SQLite spool (WAL; group commit; fsync on / off). 'one at a time': "
                  f"{one_by_one:,} sequential awaits, one commit each. Runs interleaved."),
        columns=["system", "result", "ratio"],
    )
    results = await compare(bench, [
        ("confirmed", _measure(count, spool=False)),
        ("spool-fsync", _measure(count, spool=True)),
        ("spool-nofsync", _measure(count, spool=True, fsync=False)),
        ("spool-one-fsync", _measure(one_by_one, spool=True, chunk=1)),
        ("spool-one-nofsync", _measure(one_by_one, spool=True, fsync=False, chunk=1)),
    ], "/s")
    base, why_base = results["confirmed"]
    labels = {"confirmed": "confirmed publish, broker up (baseline)",
              "spool-fsync": "outbox spool, fsync per commit",
              "spool-nofsync": "outbox spool, no fsync (outbox_fsync = false)",
              "spool-one-fsync": "outbox spool, one at a time, fsync",
              "spool-one-nofsync": "outbox spool, one at a time, no fsync"}
    for key, label in labels.items():
        value, why = results[key]
        section.rows.append(rate_row(label, value, base, na=why or why_base if key != "confirmed" else why))
    spool, why_spool = results["spool-fsync"]
    r = ratio(spool, base)
    section.targets.append(Target("outbox spool (fsync) vs confirmed publish", "reported",
                                  fmt_ratio(r), verdict(None if r is None else True),
                                  why_spool or why_base))
    return [section]
