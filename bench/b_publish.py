"""Publish throughput with publisher confirms: queuewatch's async and sync producers vs raw
aio-pika (same in-flight window), a naive pika loop waiting for each confirm, Dramatiq
``send`` (``confirm_delivery=True``) and Celery ``apply_async`` (``confirm_publish``)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aio_pika

from bench import peers, qw
from bench.amqp_tools import connect
from bench.harness import Bench, NotAvailable, Section, Target, compare, rate_row, verdict
from bench.stats import fmt_ratio, ratio
from queuewatch import envelope
from queuewatch.config import Settings

#: Every publisher sends to the same kind of queue: queuewatch's default x-max-priority 10.
PRIORITY = 10


async def _qw_async(settings: Settings, count: int, window: int) -> float:
    mod = qw.require_producer()
    await peers.setup_queue("queuewatch", settings)
    async with mod.AsyncProducer(settings, peers.qw_topology(), window=window) as producer:
        start = time.perf_counter()
        futures = [await producer.submit(peers.QUEUE, {"n": i}) for i in range(count)]
        await producer.flush()
        elapsed = time.perf_counter() - start
    failed = [f for f in futures if f.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} publishes failed: {failed[0].exception()}")
    return count / elapsed


async def _raw_aio_pika(settings: Settings, count: int, window: int) -> float:
    await peers.setup_queue("raw", settings)
    conn = await connect(settings)
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = channel.default_exchange
        slots = asyncio.Semaphore(window)
        tasks = []
        start = time.perf_counter()
        for i in range(count):
            await slots.acquire()
            job_id = envelope.new_job_id()
            msg = aio_pika.Message(
                b'{"n": %d}' % i, message_id=job_id, timestamp=time.time(),
                content_type=envelope.JSON, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=envelope.job_headers(job_id=job_id),
            )
            task = asyncio.ensure_future(exchange.publish(msg, peers.QUEUE, mandatory=True))
            task.add_done_callback(lambda _: slots.release())
            tasks.append(task)
        await asyncio.gather(*tasks)
        return count / (time.perf_counter() - start)
    finally:
        await conn.close()


def _qw_sync(settings: Settings, count: int) -> float:
    mod = qw.require_producer()
    with mod.Producer(settings, peers.qw_topology()) as producer:
        start = time.perf_counter()
        for i in range(count):
            producer.publish(peers.QUEUE, {"n": i})
        return count / (time.perf_counter() - start)


def _naive_pika(settings: Settings, count: int) -> float:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url_for()))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        start = time.perf_counter()
        for i in range(count):
            job_id = envelope.new_job_id()
            channel.basic_publish("", peers.QUEUE, b'{"n": %d}' % i, pika.BasicProperties(
                content_type=envelope.JSON, delivery_mode=2, message_id=job_id,
                timestamp=int(time.time()), headers=envelope.job_headers(job_id=job_id),
            ), mandatory=True)
        return count / (time.perf_counter() - start)
    finally:
        conn.close()


def _dramatiq(settings: Settings, count: int) -> float:
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=settings.amqp_url_for(), confirm_delivery=True,
                            max_priority=PRIORITY)
    try:
        actor = dramatiq.actor(broker=broker, queue_name=peers.QUEUE, actor_name="noop")(_noop)
        actor.send(-1)  # declares the queues (not timed)
        start = time.perf_counter()
        for i in range(count):
            actor.send(i)
        return count / (time.perf_counter() - start)
    finally:
        broker.close()


def _noop(n: int) -> None:
    pass


def _celery(settings: Settings, count: int) -> float:
    from celery import Celery

    app = Celery("bench-publish", broker=settings.amqp_url_for())
    app.conf.update(task_default_queue=peers.QUEUE, task_ignore_result=True,
                    broker_transport_options={"confirm_publish": True},
                    task_queue_max_priority=PRIORITY)
    task = app.task(name="bench.noop")(_noop)
    try:
        task.apply_async((-1,))  # connects and declares (not timed)
        start = time.perf_counter()
        for i in range(count):
            task.apply_async((i,))
        return count / (time.perf_counter() - start)
    finally:
        app.close()


async def run(bench: Bench) -> list[Section]:
    fast = bench.size(20_000, 500)
    slow = bench.size(5_000, 100)
    window = 256
    with contextlib.suppress(NotAvailable):
        window = int(qw.require_producer().DEFAULT_WINDOW)
    section = Section(
        key="publish",
        title="Publish throughput with publisher confirms",
        measures=(
            f"Persistent, mandatory jobs to one queue, each publish confirmed. Pipelined "
            f"publishers send {fast:,} with an in-flight window of {window}; one-at-a-time "
            f"publishers send {slow:,}. Every publisher sends to the same kind of queue "
            "(x-max-priority 10). Runs interleaved. Ratio: against raw aio-pika with the same "
            "window."
        ),
        columns=["publisher", "result", "ratio"],
    )

    def sync(fn, count):  # type: ignore[no-untyped-def]
        async def measure(settings: Settings) -> float:
            if fn in (_dramatiq, _celery):
                peers.check_available("dramatiq" if fn is _dramatiq else "celery")
            else:
                await peers.setup_queue("raw", settings)
            return await asyncio.to_thread(fn, settings, count)
        return measure

    contenders = [
        ("raw", f"raw aio-pika, window {window} (baseline)",
         lambda s: _raw_aio_pika(s, fast, window)),
        ("qw-async", f"queuewatch AsyncProducer, window {window}",
         lambda s: _qw_async(s, fast, window)),
        ("qw-sync", "queuewatch Producer (sync, pika)", sync(_qw_sync, slow)),
        ("pika", "naive pika loop, wait for each confirm", sync(_naive_pika, slow)),
        ("dramatiq", "Dramatiq send, confirm_delivery=True", sync(_dramatiq, slow)),
        ("celery", "Celery apply_async, confirm_publish", sync(_celery, slow)),
    ]
    results = await compare(bench, [(key, measure) for key, _, measure in contenders], "/s")
    base = results["raw"][0]
    for key, label, _ in contenders:
        value, why = results[key]
        section.rows.append(rate_row(label, value, base, na=why))
    qa, why = results["qw-async"]
    r = ratio(qa, base)
    section.targets.append(Target("async producer vs raw aio-pika", ">= 0.8×", fmt_ratio(r),
                                  verdict(None if r is None else r >= 0.8), why))
    r2 = ratio(qa, results["pika"][0])
    section.targets.append(Target("async producer vs naive pika", ">= 3×", fmt_ratio(r2),
                                  verdict(None if r2 is None else r2 >= 3.0), why))
    return [section]
