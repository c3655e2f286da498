"""The queuewatch worker under test as an app for the CLI:
``queuewatch worker bench.apps.qw_app:make_worker [--processes N]``.

The same worker as :mod:`bench.apps.qw_worker` (concurrency, prefetch, telemetry and
idempotency from the ``BENCH_*`` variables), built by a factory so that ``--processes N``
runs it in N supervised processes. The idempotency store lives in ``state_dir``
(``QUEUEWATCH_STATE_DIR``, set by the harness to a temporary directory), shared by the
processes as it would be on a user's host.
"""

from __future__ import annotations

import asyncio
import os

from bench.apps import common
from queuewatch.config import Settings
from queuewatch.topology import QueueSpec, Topology
from queuewatch.worker import Job, Worker

#: Matches bench.peers.BENCH_DELAY_LEVELS (the topology the harness declared).
DELAY_LEVELS = 4


def make_worker(settings: Settings) -> Worker:
    telemetry = os.environ.get("BENCH_TELEMETRY", "1") == "1"
    idempotency = os.environ.get("BENCH_IDEMPOTENCY", "1") == "1"
    max_priority = int(os.environ.get("BENCH_MAX_PRIORITY", "10")) or None
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
        elif common.JOB == "cpu":
            common.spin()

    return worker
