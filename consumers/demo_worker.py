"""The demo's worker process: emails (retries, DLQ), reports (slow jobs) and orders, in one.

    python consumers/demo_worker.py --amqp-url URL --vhost V --fail-ratio 0.1 --slow-ratio 0.02

Exits cleanly on SIGTERM/SIGINT (in-flight jobs finish; the rest go back to the queue).
"""

from __future__ import annotations

import email_worker  # type: ignore[import-not-found]
import report_worker  # type: ignore[import-not-found]
from _shared import parser, settings_and_topology  # type: ignore[import-not-found]
from queuewatch.worker import Worker


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    settings, topology = settings_and_topology(args)
    worker = Worker(settings, topology, concurrency=args.concurrency,
                    metrics_port=args.metrics_port, shutdown_timeout=3.0)
    email_worker.register(worker, args.fail_ratio, args.poison_ratio)
    report_worker.register(worker, args.slow_ratio)
    worker.run_sync()


if __name__ == "__main__":
    main()
