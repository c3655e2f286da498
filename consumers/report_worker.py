"""Example report worker: most reports take a second, a few take 15-40 s (shown as stuck).

Run it:  python consumers/report_worker.py --vhost queuewatch-demo --slow-ratio 0.02
     or: queuewatch worker consumers/report_worker.py:make_worker --vhost queuewatch-demo
"""

from __future__ import annotations

import asyncio
import random

from queuewatch.config import Settings
from queuewatch.topology import Topology, load_topology
from queuewatch.worker import Job, Worker


def register(worker: Worker, slow_ratio: float = 0.02) -> None:
    @worker.job("reports")
    async def build_report(job: Job) -> None:
        payload = job.payload if isinstance(job.payload, dict) else {}
        slow = payload.get("slow") or random.random() < slow_ratio
        await asyncio.sleep(random.uniform(15, 40) if slow else random.uniform(0.2, 1.5))

    @worker.job("orders")
    async def take_order(job: Job) -> None:
        await asyncio.sleep(random.uniform(0.002, 0.02))


def make_worker(settings: Settings, topology: Topology | None = None) -> Worker:
    """The factory ``queuewatch worker consumers/report_worker.py:make_worker`` calls."""
    from _shared import TOPOLOGY  # type: ignore[import-not-found]

    worker = Worker(settings, topology or load_topology(TOPOLOGY), concurrency=20)
    register(worker)
    return worker


def main() -> None:
    from _shared import parser, settings_and_topology  # type: ignore[import-not-found]

    args = parser(__doc__ or "").parse_args()
    settings, topology = settings_and_topology(args)
    worker = Worker(settings, topology, concurrency=args.concurrency,
                    metrics_port=args.metrics_port)
    register(worker, args.slow_ratio)
    worker.run_sync()


if __name__ == "__main__":
    main()
