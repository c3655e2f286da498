"""Celery peer: ``celery -A bench.apps.celery_app worker -P threads -c N -Q <queue>``.

``acks_late=True`` (ack after the task, like queuewatch), prefetch = ``BENCH_PREFETCH``
(via the multiplier), no result backend, no remote control/events/gossip/mingle, and
publisher confirms on for ``apply_async``; ``x-max-priority`` from ``BENCH_PEER_PRIORITY``.
"""

from __future__ import annotations

import time

from celery import Celery

from bench.apps import common

app = Celery("bench", broker=common.AMQP_URL)
app.conf.update(
    task_acks_late=True,
    task_default_queue=common.QUEUE,
    task_ignore_result=True,
    worker_prefetch_multiplier=max(1, common.PREFETCH // common.CONCURRENCY),
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"confirm_publish": True},
    task_queue_max_priority=common.PEER_PRIORITY or None,
)


@app.task(name="bench.noop")
def noop(n: int) -> None:
    pass


@app.task(name="bench.io")
def io(n: int) -> None:
    time.sleep(common.IO_SECONDS)


@app.task(name="bench.latency")
def latency(ts: float) -> None:
    common.record_latency(ts)
