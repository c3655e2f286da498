"""Profile a queuewatch component where a benchmark target is missed (pyinstrument).

    python -m bench.profile worker   [--jobs 20000] [--no-idempotency] [--no-telemetry]
    python -m bench.profile replay   [--jobs 20000]
    python -m bench.profile snapshot [--jobs 5000]      (number of queues)
    python -m bench.profile tui      [--jobs 5000]      (number of queues)
    python -m bench.profile publish  [--jobs 20000]

Runs one measurement in a fresh vhost, writes the text profile to
``bench/results/profiles/<what>.txt`` and prints its head. The explanations in
``bench/notes.md`` (folded into BENCHMARKS.md) come from these profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from bench import b_monitor, b_replay, peers, procs
from bench.amqp_tools import connect, preload, time_drain
from bench.harness import Bench, BenchConfig, make_settings
from queuewatch.broker.management import ManagementClient
from queuewatch.config import Settings

OUT = Path(__file__).resolve().parent / "results" / "profiles"


def _profiler():  # type: ignore[no-untyped-def]
    from pyinstrument import Profiler

    return Profiler(interval=0.001, async_mode="disabled")


async def worker(settings: Settings, jobs: int, idempotency: bool, telemetry: bool) -> str:
    path = OUT / "worker.txt"
    await peers.setup_queue("queuewatch", settings)
    await preload(settings, peers.QUEUE, jobs, lambda i: peers.message("queuewatch", "noop", i))
    proc = peers.start_worker("queuewatch", settings, "noop", concurrency=10, prefetch=20,
                              idempotency=idempotency, telemetry=telemetry,
                              extra_env={"BENCH_PROFILE": str(path)})
    with procs.running(proc):
        seconds = await time_drain(settings, peers.QUEUE, jobs, proc)
    print(f"worker: {jobs / seconds:,.0f} jobs/s")
    return str(path)


async def replay(settings: Settings, jobs: int) -> str:
    from queuewatch.dlq import DeadLetterQueue

    await b_replay._prepare(settings, jobs)
    conn = await connect(settings)
    profiler = _profiler()
    try:
        dlq = DeadLetterQueue(conn, None, settings, b_replay.DLQ)
        t0 = time.perf_counter()
        profiler.start()
        result = await dlq.replay()
        profiler.stop()
        print(f"replay: {result.replayed / (time.perf_counter() - t0):,.0f}/s")
    finally:
        await conn.close()
    return _write(profiler, "replay")


async def snapshot(settings: Settings, queues: int) -> str:
    from queuewatch.monitor import Monitor

    await b_monitor.make_queues(settings, 0, queues)
    mgmt = ManagementClient(settings)
    monitor = Monitor(mgmt, settings)
    await monitor.poll()
    profiler = _profiler()
    profiler.start()
    for _ in range(5):
        await monitor.poll()
    profiler.stop()
    await mgmt.aclose()
    return _write(profiler, "snapshot")


async def tui(settings: Settings, queues: int) -> str:
    path = OUT / "tui.txt"
    await b_monitor.make_queues(settings, 0, queues)
    env = {"BENCH_AMQP_URL": settings.amqp_url_for(), "BENCH_VHOST": settings.effective_vhost,
           "BENCH_REFRESHES": "10", "BENCH_PROFILE": str(path)}
    proc = procs.python("bench.apps.tui_probe", env=env, name="tui-probe")
    with procs.running(proc):
        while proc.poll() is None:
            await asyncio.sleep(0.2)
    print(procs.log_tail(proc, 3))
    return str(path)


async def publish(settings: Settings, jobs: int) -> str:
    from queuewatch.producer import AsyncProducer

    await peers.setup_queue("queuewatch", settings)
    profiler = _profiler()
    async with AsyncProducer(settings, peers.qw_topology()) as producer:
        profiler.start()
        for i in range(jobs):
            await producer.submit(peers.QUEUE, {"n": i})
        await producer.flush()
        profiler.stop()
    return _write(profiler, "publish")


def _write(profiler, name: str) -> str:  # type: ignore[no-untyped-def]
    path = OUT / f"{name}.txt"
    path.write_text(profiler.output_text(unicode=False, color=False))
    return str(path)


async def main(what: str, jobs: int | None, idempotency: bool, telemetry: bool) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    settings = make_settings()
    mgmt = ManagementClient(settings)
    bench = Bench(settings, mgmt, BenchConfig(runs=1))
    try:
        async with bench.vhost(f"profile-{what}") as st:
            if what == "worker":
                path = await worker(st, jobs or 20_000, idempotency, telemetry)
            elif what == "replay":
                path = await replay(st, jobs or 20_000)
            elif what == "snapshot":
                path = await snapshot(st, jobs or 5_000)
            elif what == "tui":
                path = await tui(st, jobs or 5_000)
            else:
                path = await publish(st, jobs or 20_000)
    finally:
        await mgmt.aclose()
        procs.stop_all()
    text = Path(path).read_text() if Path(path).exists() else "(no profile written)"
    print("\n".join(text.splitlines()[:80]))
    print(f"\nfull profile: {path}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("what", choices=("worker", "replay", "snapshot", "tui", "publish"))
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--no-idempotency", action="store_true")
    p.add_argument("--no-telemetry", action="store_true")
    a = p.parse_args()
    procs.install_handlers()
    asyncio.run(main(a.what, a.jobs, not a.no_idempotency, not a.no_telemetry))
