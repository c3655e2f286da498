"""End-to-end latency, publish -> handler start, at a fixed rate below saturation.

One rate for every system: 50% of the slowest system's no-op throughput measured earlier
in the same run (so all of them run below saturation at the same load). The same paced
aio-pika publisher feeds every system its own wire format; the message carries
``time.time()`` at publish and the handler records ``time.time() - ts`` on start.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import peers, procs
from bench.amqp_tools import connect, time_drain, wait_consumers
from bench.harness import Bench, NotAvailable, Row, Section, one_line
from bench.stats import Stat, fmt_ratio, percentile, stat
from queuewatch.config import Settings

WINDOW = 1000
PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))
LABELS = {
    "raw": "raw aio-pika consume+ack (baseline)",
    "queuewatch": "queuewatch worker",
    "dramatiq": "Dramatiq",
    "celery": "Celery (acks_late)",
}


async def _publish_paced(settings: Settings, system: str, rate: float, count: int) -> None:
    conn = await connect(settings)
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = channel.default_exchange
        slots = asyncio.Semaphore(WINDOW)
        tasks: list[asyncio.Future[Any]] = []
        start = time.perf_counter()
        sent = 0
        while sent < count:
            due = min(count, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                await slots.acquire()
                task = asyncio.ensure_future(
                    exchange.publish(peers.message(system, "latency", sent), peers.QUEUE))
                task.add_done_callback(lambda _: slots.release())
                tasks.append(task)
                sent += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
    finally:
        await conn.close()


def _read(directory: Path) -> list[float]:
    values: list[float] = []
    for path in directory.glob("lat-*.txt"):
        values.extend(float(x) for x in path.read_text().split())
    return values


async def _one_run(settings: Settings, system: str, rate: float, count: int,
                   bench: Bench) -> list[float]:
    peers.check_available(system)
    await peers.setup_queue(system, settings)
    with tempfile.TemporaryDirectory(prefix="qwbench-lat-") as tmp:
        directory = Path(tmp)
        proc = peers.start_worker(system, settings, "latency",
                                  concurrency=bench.config.concurrency,
                                  prefetch=bench.prefetch, latency_dir=directory)
        with procs.running(proc):
            await wait_consumers(settings, peers.QUEUE, proc=proc)
            await asyncio.sleep(0.1 if bench.quick else 0.5)  # let the worker settle
            await _publish_paced(settings, system, rate, count)
            await time_drain(settings, peers.QUEUE, count, proc, timeout=120)
            deadline = time.monotonic() + 15
            values = _read(directory)
            while len(values) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                values = _read(directory)
        if len(values) < count * 0.99:
            raise RuntimeError(f"only {len(values)} of {count} jobs recorded a latency")
        return sorted(values)


async def run(bench: Bench) -> list[Section]:
    known = [bench.facts[k] for k in (f"worker_max_{s}" for s in peers.SYSTEMS)
             if k in bench.facts]
    default_rate = 200.0 if bench.quick else 500.0
    rate = max(50.0, 0.5 * min(known)) if known else default_rate
    seconds = 0.5 if bench.quick else 8.0
    count = max(50, int(rate * seconds))
    source = ("50% of the slowest system's no-op throughput measured above"
              if known else "a fixed default (the worker benchmark did not run)")
    section = Section(
        key="latency",
        title=f"End-to-end latency, publish → handler start, at {rate:,.0f} jobs/s",
        measures=(
            f"{count:,} jobs published at a steady {rate:,.0f}/s ({source}) by the same "
            "paced aio-pika publisher (confirms, window 1,000) in each system's own wire "
            "format, to one worker process (concurrency "
            f"{bench.config.concurrency}, prefetch {bench.prefetch}). The handler records "
            "`time.time()` minus the publish time carried in the message. Percentiles over "
            "all jobs of a run, then the median (min–max) over interleaved runs. Ratio: p99 "
            "against raw (ratio of the medians)."
        ),
        columns=["system", "p50", "p99", "p99.9", "p99 ratio"],
    )
    per: dict[str, dict[str, list[float]]] = {
        s: {name: [] for name, _ in PERCENTILES} for s in LABELS}
    why: dict[str, str] = {s: "" for s in LABELS}
    if bench.quick:  # the smoke run checks the harness: the peers ran in the worker family
        for system in ("dramatiq", "celery"):
            why[system] = "skipped in quick mode"
    for _ in range(bench.runs):  # interleaved: run 1 of every system, then run 2, ...
        for system in LABELS:
            if why[system]:
                continue
            try:
                async with bench.vhost(f"lat-{system}") as settings:
                    values = await _one_run(settings, system, rate, count, bench)
                for name, p in PERCENTILES:
                    per[system][name].append(percentile(values, p) * 1000)
            except NotAvailable as exc:
                why[system] = f"not available: {exc}"
            except Exception as exc:  # one contender's failure must not stop the others
                why[system] = one_line(f"failed: {type(exc).__name__}: {exc}")
    results: dict[str, dict[str, Stat] | None] = {
        s: None if why[s] else {name: stat(v, "ms") for name, v in per[s].items()}
        for s in LABELS}
    base = results["raw"]
    for system, label in LABELS.items():
        res = results[system]
        if res is None:
            section.rows.append(Row(label, {c: "n/a" for c in section.columns[1:]},
                                    None, why[system]))
            continue
        cells = {name: res[name].fmt() for name, _ in PERCENTILES}
        # ratio of the medians: tail percentiles of single runs are too jumpy to pair
        cells["p99 ratio"] = fmt_ratio(
            res["p99"].median / base["p99"].median if base and base["p99"].median else None)
        section.rows.append(Row(label, cells, res["p99"], why[system]))
    section.notes.append("Lower is better; a p99 ratio above 1× means slower than raw aio-pika.")
    return [section]
