"""Example email worker: some sends fail and are retried, a few (poison) always fail -> emails.dlq.

Run it:  python consumers/email_worker.py --vhost queuewatch-demo --fail-ratio 0.1
     or: queuewatch worker consumers/email_worker.py:make_worker --vhost queuewatch-demo
"""

from __future__ import annotations

import asyncio
import random
import zlib

from queuewatch.config import Settings
from queuewatch.topology import Topology, load_topology
from queuewatch.worker import Job, NonRetryable, Worker


class SmtpTemporaryError(Exception):
    """The mail server said 'try again later'."""


def is_poison(job_id: str, ratio: float) -> bool:
    """A poison job fails on every attempt: chosen by its id, the same in every process."""
    return zlib.crc32(job_id.encode()) % 10_000 < ratio * 10_000


def register(worker: Worker, fail_ratio: float = 0.1, poison_ratio: float = 0.01) -> None:
    @worker.job("emails")
    async def send_email(job: Job) -> None:
        payload = job.payload if isinstance(job.payload, dict) else {}
        if payload.get("poison") or is_poison(job.job_id, poison_ratio):
            raise RuntimeError(f"mailbox {payload.get('to', '?')} does not exist")
        if payload.get("invalid"):
            raise NonRetryable("address is not valid")
        await asyncio.sleep(random.uniform(0.005, 0.05))
        if random.random() < fail_ratio:
            raise SmtpTemporaryError("421 service not available, try again later")


def make_worker(settings: Settings, topology: Topology | None = None) -> Worker:
    """The factory ``queuewatch worker consumers/email_worker.py:make_worker`` calls."""
    from _shared import TOPOLOGY  # type: ignore[import-not-found]

    worker = Worker(settings, topology or load_topology(TOPOLOGY))
    register(worker)
    return worker


def main() -> None:
    from _shared import parser, settings_and_topology  # type: ignore[import-not-found]

    args = parser(__doc__ or "").parse_args()
    settings, topology = settings_and_topology(args)
    worker = Worker(settings, topology, concurrency=args.concurrency,
                    metrics_port=args.metrics_port)
    register(worker, args.fail_ratio, args.poison_ratio)
    worker.run_sync()


if __name__ == "__main__":
    main()
