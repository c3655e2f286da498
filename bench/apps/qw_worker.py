"""The queuewatch worker under test (``python -m bench.apps.qw_worker``).

Built only from the public API (``queuewatch.worker.Worker``): one process, concurrency
``BENCH_CONCURRENCY``, prefetch ``BENCH_PREFETCH``. ``BENCH_TELEMETRY=1`` (the default)
keeps heartbeats (1 s) and Prometheus metrics on, served on a free port; ``0`` turns the
metrics off and sends one heartbeat only. ``BENCH_IDEMPOTENCY=0`` turns the idempotency
store off (it is on by default, as for any user). State (the SQLite idempotency store)
lives in a temporary directory removed at exit. ``BENCH_PROFILE=<path>`` profiles the
whole run with pyinstrument and writes the text report there (see ``bench.profile``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bench.apps import common
from queuewatch.config import load_settings
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker import Job, Worker

#: Matches bench.peers.BENCH_DELAY_LEVELS (the topology the harness declared).
DELAY_LEVELS = 4


def main() -> None:
    telemetry = os.environ.get("BENCH_TELEMETRY", "1") == "1"
    idempotency = os.environ.get("BENCH_IDEMPOTENCY", "1") == "1"
    max_priority = int(os.environ.get("BENCH_MAX_PRIORITY", "10")) or None
    with tempfile.TemporaryDirectory(prefix="qwbench-") as state:
        settings = load_settings(
            env={}, amqp_url=common.AMQP_URL, vhost=os.environ["BENCH_VHOST"],
            state_dir=Path(state), job_events=os.environ.get("BENCH_JOB_EVENTS", "1") == "1",
        )
        limit = os.environ.get("BENCH_RATE_LIMIT")  # queue-wide jobs/s (bench.b_limits)
        topology = Topology(queues=(QueueSpec(common.QUEUE, max_priority=max_priority,
                                              rate_limit=float(limit) if limit else None),),
                            delay_levels=DELAY_LEVELS)
        worker = Worker(
            settings, topology, concurrency=common.CONCURRENCY, prefetch=common.PREFETCH,
            metrics=telemetry, metrics_port=0 if telemetry else None,
            heartbeat_interval=1.0 if telemetry else 1e9, idempotency=idempotency,
        )

        @worker.job(common.QUEUE)
        async def handle(job: Job) -> None:
            if common.JOB == "io":
                await asyncio.sleep(common.IO_SECONDS)
            elif common.JOB == "latency":
                common.record_latency(job.payload["ts"])

        profile = os.environ.get("BENCH_PROFILE")
        if not profile:
            worker.run_sync()
            return
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
        try:
            worker.run_sync()
        finally:
            profiler.stop()
            Path(profile).write_text(profiler.output_text(unicode=False, color=False))
            # (and where the time is spent, by function: the tree hides library frames)
            Path(profile).with_suffix(".flat.txt").write_text(
                profiler.output_text(unicode=False, color=False, flat=True))


if __name__ == "__main__":
    main()
