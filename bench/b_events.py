"""Job events: what recording costs the worker, and how fast a status by id answers.

* recording: the queuewatch worker (defaults) draining a no-op backlog with job events on
  vs off, interleaved in one run (goal: on >= 0.9x off);
* lookup: ``Jobs.status(id)`` p50/p99 with 10^4, 10^5 and 10^6 recorded events in the
  stream (goal: p99 < 50 ms at 10^6), fresh (with the marker round trip that makes it
  read-your-writes) and from the index alone; plus the first catch-up of a new host;
* result wait: from the worker's confirm of ``succeeded`` to ``result()`` returning.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from bench import peers, procs
from bench.amqp_tools import preload, time_drain
from bench.harness import Bench, Row, Section, Target, compare, rate_row, verdict
from bench.stats import fmt_ratio, percentile, ratio
from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.events import model as ev
from queuewatch.events.model import Event, Source
from queuewatch.events.recorder import EventRecorder
from queuewatch.jobs import Jobs

KINDS = (ev.ACCEPTED, ev.STARTED, ev.SUCCEEDED)


def _drain(bench: Bench, count: int, events: bool):  # type: ignore[no-untyped-def]
    async def measure(settings: Settings) -> float:
        await peers.setup_queue("queuewatch", settings, 10)
        await preload(settings, peers.QUEUE, count, lambda i: peers.message("queuewatch", "noop", i))
        proc = peers.start_worker(
            "queuewatch", settings, "noop", concurrency=bench.config.concurrency,
            prefetch=bench.prefetch, extra_env={"BENCH_JOB_EVENTS": "1" if events else "0"})
        with procs.running(proc):
            seconds = await time_drain(settings, peers.QUEUE, count, proc)
        return count / seconds
    return measure


async def run_recording(bench: Bench) -> list[Section]:
    count = bench.size(30_000, 300)
    section = Section(
        key="events-recording",
        title=f"Job events: worker throughput with recording on vs off ({count:,} no-op jobs)",
        measures=("The queuewatch worker process with its defaults (telemetry, metrics, "
                  "idempotency) draining a preloaded backlog, job events off vs on, runs "
                  "interleaved. With events on, every job records started + succeeded, and "
                  "the ack waits for the confirm of its succeeded event (batched)."),
        columns=["system", "result", "ratio"],
    )
    results = await compare(bench, [("events-off", _drain(bench, count, False)),
                                    ("events-on", _drain(bench, count, True))], "/s")
    off, why_off = results["events-off"]
    on, why_on = results["events-on"]
    section.rows.append(rate_row("job events off (baseline)", off, off, na=why_off))
    section.rows.append(rate_row("job events on", on, off, na=why_on))
    r = ratio(on, off)
    section.targets.append(Target("worker no-op, recording on vs off", ">= 0.9×", fmt_ratio(r),
                                  verdict(None if r is None else r >= 0.9), why_on or why_off))
    return [section]


async def _fill(settings: Settings, total: int, per_message: int = 500) -> list[str]:
    """Record ``total`` events (3 per job: accepted, started, succeeded) straight into the
    stream; returns the job ids."""
    link = BrokerLink(settings, name="bench-events")
    await link.open(30)
    recorder = EventRecorder(link, settings)
    source = Source("bench")
    jobs: list[str] = []
    try:
        now = int(time.time() * 1000)
        for n in range(total // len(KINDS)):
            job = f"job-{n:07d}"
            jobs.append(job)
            for i, kind in enumerate(KINDS):
                recorder.emit(Event(kind, job, "bench", 1, source, at_ms=now + i))
            if recorder.pending >= 30_000:
                await recorder.flush()
        await recorder.flush()
    finally:
        await recorder.close()
        await link.close()
    return jobs


def _pct(samples: list[float], p: float) -> float:
    """``p`` in 0..1, as the other benches' :func:`bench.stats.percentile` (nearest rank)."""
    return percentile(sorted(samples), p * 100)


async def run_lookup(bench: Bench) -> list[Section]:
    sizes = [10_000, 100_000, 1_000_000] if not bench.quick else [3_000]
    section = Section(
        key="events-lookup",
        title="Job events: status by id (p50 / p99) against recorded events",
        measures=("Events recorded straight into the stream (3 per job), then a new host "
                  "(empty index) catches up, then 500 `Jobs.status(id)` of random known ids. "
                  "'fresh' includes the read-your-writes marker round trip through the "
                  "stream; 'index' is `status(id, fresh=False)`. Baseline for the ratio: "
                  "the same lookup answered from the index alone."),
        columns=["events", "catch-up", "fresh p50", "fresh p99", "index p50", "index p99",
                 "ratio"],
    )
    for size in sizes:
        async with bench.vhost(f"lookup-{size}") as settings:
            jobs = await _fill(settings, size)
            with tempfile.TemporaryDirectory(prefix="qwbench-index-") as tmp:
                t0 = time.perf_counter()
                api = Jobs(settings, index=Path(tmp) / "index.sqlite3")
                await api.start(900)  # a new host reads the whole stream once
                catch_up = time.perf_counter() - t0
                try:
                    fresh, local = [], []
                    for _ in range(500):
                        job = random.choice(jobs)
                        t = time.perf_counter()
                        st = await api.status(job)
                        fresh.append((time.perf_counter() - t) * 1000)
                        t = time.perf_counter()
                        await api.status(job, fresh=False)
                        local.append((time.perf_counter() - t) * 1000)
                        if st.state.value != "succeeded":
                            raise RuntimeError(f"{job} answered {st.state.value}")
                finally:
                    await api.close()
        p99 = _pct(fresh, 0.99)
        section.rows.append(Row(f"{size:,}", {
            "catch-up": f"{catch_up:.1f} s", "fresh p50": f"{_pct(fresh, 0.5):.2f} ms",
            "fresh p99": f"{p99:.2f} ms", "index p50": f"{_pct(local, 0.5):.2f} ms",
            "index p99": f"{_pct(local, 0.99):.2f} ms",
            "ratio": f"{_pct(fresh, 0.5) / max(_pct(local, 0.5), 1e-9):.1f}×"}, None, ""))
        if size == sizes[-1]:
            section.targets.append(Target(f"status p99 at {size:,} events", "< 50 ms",
                                          f"{p99:.1f} ms", verdict(p99 < 50)))
    return [section]


async def run_result_wait(bench: Bench) -> list[Section]:
    """How soon ``result()`` returns after the job finished: from the worker's ``succeeded``
    event (its timestamp, taken just before the record) to the waiting caller, in one
    process; baseline: the same job's run time as the worker saw it."""
    from queuewatch.producer import AsyncProducer
    from queuewatch.topology import QueueSpec, Topology
    from queuewatch.worker import Job, Worker

    count = bench.size(300, 30)
    section = Section(
        key="events-result-wait",
        title=f"Job events: result() latency after the job finished ({count} jobs, one at a time)",
        measures=("A worker (defaults) and a caller that publishes a job and awaits "
                  "`Jobs.result(id)` (no polling: the answer arrives on the stream), one job at "
                  "a time. Latency = when result() returned − the succeeded event's time."),
        columns=["what", "p50", "p99"],
    )
    async with bench.vhost("result-wait") as settings:
        from queuewatch.broker.connect import connect
        from queuewatch.broker.declare import declare_topology

        topo = Topology(queues=(QueueSpec("jobs"),), delay_levels=2)
        conn = await connect(settings)
        await declare_topology(conn, topo, settings.effective_vhost, None)
        await conn.close()
        worker = Worker(settings, topo, metrics=False, heartbeat_interval=1e9)

        @worker.job("jobs")
        async def handle(job: Job) -> int:
            return 1

        task = asyncio.create_task(worker.run())
        lat: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            async with Jobs(settings, index=Path(tmp) / "i.sqlite3") as jobs, \
                    AsyncProducer(settings, topo) as producer:
                await asyncio.wait_for(worker.connected.wait(), 30)
                for n in range(count):
                    job_id = f"rw-{n}"
                    await producer.publish("jobs", {}, job_id=job_id)
                    await jobs.result(job_id, timeout=30)
                    done = time.time() * 1000
                    st = await jobs.status(job_id, fresh=False)
                    ended = next(e.at_ms for e in st.events if e.kind == "succeeded")
                    lat.append(done - ended)
        worker.stop()
        await task
    section.rows.append(Row("result() after succeeded", {
        "p50": f"{_pct(lat, 0.5):.1f} ms", "p99": f"{_pct(lat, 0.99):.1f} ms"}, None, ""))
    return [section]
