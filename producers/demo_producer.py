"""Example order-intake service (async): a steady flow of jobs with mixed priorities, some
delayed, and a burst now and then that runs into the ``orders`` queue's cap and backs off.

    python producers/demo_producer.py --amqp-url URL --vhost V --rate 20 --burst-every 30

Exits cleanly on SIGTERM/SIGINT after the publishes in flight are confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import uuid
from pathlib import Path

from queuewatch.config import load_settings
from queuewatch.errors import BackPressure, BrokerUnavailable
from queuewatch.producer import AsyncProducer
from queuewatch.topology import load_topology

log = logging.getLogger("demo_producer")
TOPOLOGY = Path(__file__).resolve().parents[1] / "consumers" / "demo_topology.toml"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--amqp-url")
    p.add_argument("--vhost")
    p.add_argument("--config")
    p.add_argument("--topology", default=str(TOPOLOGY))
    p.add_argument("--rate", type=float, default=20.0, help="jobs per second in steady state")
    p.add_argument("--burst-every", type=float, default=30.0, help="seconds between bursts (0: none)")
    p.add_argument("--burst-size", type=int, default=3000, help="orders per burst")
    return p.parse_args()


async def steady(producer: AsyncProducer, rate: float, stop: asyncio.Event) -> None:
    # Receipt n of this run: a key of its own (n starts again each run, and the worker's
    # idempotency store outlives runs: "receipt-n" alone skipped each new receipt as done)
    run = uuid.uuid4().hex[:8]
    n = 0
    while not stop.is_set():
        n += 1
        kind = random.random()
        try:
            if kind < 0.6:
                await producer.publish("orders", {"order": n, "items": random.randint(1, 5)},
                                       priority=random.choice([1, 1, 1, 5, 9]))
            elif kind < 0.9:
                await producer.publish(
                    "emails", {"to": f"customer{n}@example.com", "template": "receipt"},
                    priority=random.choice([1, 5]),
                    delay=random.choice([None, None, 2, 5]),
                    idempotency_key=f"receipt-{run}-{n}",
                )
            else:
                await producer.publish("reports", {"report": n, "slow": random.random() < 0.05},
                                       priority=random.randint(0, 5))
        except BackPressure as exc:
            log.warning("%s; slowing down", exc)
            await asyncio.sleep(1.0)
        try:
            await asyncio.wait_for(stop.wait(), 1.0 / rate)
        except TimeoutError:
            pass


async def bursts(producer: AsyncProducer, every: float, size: int, stop: asyncio.Event) -> None:
    while every > 0 and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except TimeoutError:
            pass
        accepted = refused = 0
        futures = [await producer.submit("orders", {"burst": i}, priority=1) for i in range(size)]
        for fut in asyncio.as_completed(futures):
            try:
                await fut
                accepted += 1
            except BackPressure:
                refused += 1
        log.info("burst of %d orders: %d accepted, %d refused by the cap (back-pressure)",
                 size, accepted, refused)


async def main() -> None:
    args = parse()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(args.config, amqp_url=args.amqp_url, vhost=args.vhost)
    topology = load_topology(args.topology)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with AsyncProducer(settings, topology, connection_name="demo order intake") as p:
            await asyncio.gather(steady(p, args.rate, stop),
                                 bursts(p, args.burst_every, args.burst_size, stop))
    except BrokerUnavailable as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    log.info("stopped")


if __name__ == "__main__":
    asyncio.run(main())
