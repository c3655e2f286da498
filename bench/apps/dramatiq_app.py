"""Dramatiq peer: ``dramatiq bench.apps.dramatiq_app -p 1 -t N -Q <queue>``.

Imported by the harness too (for ``send``); the broker URL comes from ``BENCH_AMQP_URL``.
Prefetch is set with Dramatiq's own ``dramatiq_queue_prefetch`` environment variable.
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.apps import common

broker = RabbitmqBroker(
    url=common.AMQP_URL,
    confirm_delivery=os.environ.get("BENCH_CONFIRM", "1") == "1",
    max_priority=common.PEER_PRIORITY or None,
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=common.QUEUE, max_retries=0)
def noop(n: int) -> None:
    pass


@dramatiq.actor(queue_name=common.QUEUE, max_retries=0)
def io(n: int) -> None:
    time.sleep(common.IO_SECONDS)


@dramatiq.actor(queue_name=common.QUEUE, max_retries=0)
def cpu(n: int) -> None:
    common.spin()


@dramatiq.actor(queue_name=common.QUEUE, max_retries=0)
def latency(ts: float) -> None:
    common.record_latency(ts)
