"""Example blocking producer (pika), the way a Flask or Django view would publish a job.

    python producers/sync_producer.py --vhost queuewatch-demo --count 100
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from queuewatch.config import load_settings
from queuewatch.errors import BackPressure, QueuewatchError
from queuewatch.producer import Producer
from queuewatch.topology import load_topology

TOPOLOGY = Path(__file__).resolve().parents[1] / "consumers" / "demo_topology.toml"
_stop = False


def _on_signal(_signum: int, _frame: FrameType | None) -> None:
    global _stop
    _stop = True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--amqp-url")
    p.add_argument("--vhost")
    p.add_argument("--topology", default=str(TOPOLOGY))
    p.add_argument("--count", type=int, default=100, help="emails to publish (0: until stopped)")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between publishes")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    settings = load_settings(amqp_url=args.amqp_url, vhost=args.vhost)
    n = 0
    try:
        with Producer(settings, load_topology(args.topology)) as producer:
            while not _stop and (args.count == 0 or n < args.count):
                n += 1
                try:
                    result = producer.publish("emails", {"to": f"user{n}@example.com"},
                                              idempotency_key=f"welcome-{n}", wait=True,
                                              timeout=10)
                    print(f"published {result.job_id}", flush=True)
                except BackPressure as exc:
                    print(f"gave up: {exc}", file=sys.stderr)
                time.sleep(args.interval)
    except QueuewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
