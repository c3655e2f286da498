"""The systems under test, side by side: how each declares its queue, what its messages
look like on the wire (for preloading a backlog), and how its worker process is started.

Systems: ``queuewatch`` (the worker from ``queuewatch.worker``), ``raw`` (a bare aio-pika
consume+ack loop on the same queue as queuewatch), ``dramatiq`` and ``celery`` (with the
RabbitMQ broker). Every system consumes the same kind of queue: classic, durable, with
queuewatch's default ``x-max-priority`` 10 (each peer configured through its own setting:
Dramatiq ``max_priority``, Celery ``task_queue_max_priority``), so the ratios compare the
worker runtimes, not queue types; the priority benchmark shows what priorities cost.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika

from bench import procs
from bench.amqp_tools import connect, declare_queue, qw_message
from bench.harness import NotAvailable
from queuewatch.broker.declare import declare_topology
from queuewatch.config import Settings
from queuewatch.topology import QueueSpec, Topology

QUEUE = "bench"
SYSTEMS = ("queuewatch", "raw", "dramatiq", "celery")
#: Delay levels declared in bench vhosts (few: each is a quorum queue, and no job is delayed).
BENCH_DELAY_LEVELS = 4


def qw_topology(max_priority: int | None = 10, queue: str = QUEUE) -> Topology:
    """queuewatch's default job queue (``x-max-priority`` 10, a DLQ)."""
    return Topology(queues=(QueueSpec(queue, max_priority=max_priority),),
                    delay_levels=BENCH_DELAY_LEVELS)


async def setup_queue(system: str, settings: Settings, max_priority: int | None = 10) -> None:
    """Declare the queue ``system`` consumes, exactly as that system would."""
    if system in ("queuewatch", "raw"):
        conn = await connect(settings)
        try:
            await declare_topology(conn, qw_topology(max_priority), settings.effective_vhost)
        finally:
            await conn.close()
    elif system == "dramatiq":
        # dramatiq.brokers.rabbitmq.RabbitmqBroker._build_queue_arguments
        args: dict[str, Any] = {
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{QUEUE}.XQ"}
        if max_priority:
            args["x-max-priority"] = max_priority
        await declare_queue(settings, QUEUE, args)
    elif system == "celery":
        # what Celery declares with task_queue_max_priority
        await declare_queue(settings, QUEUE, {"x-max-priority": max_priority} if max_priority
                            else None)
    else:
        raise ValueError(system)


# -- wire formats ------------------------------------------------------------------------

def message(system: str, job: str, i: int) -> aio_pika.Message:
    """Message ``i`` of a backlog for ``system`` running job ``job`` (noop, io, latency)."""
    arg: Any = time.time() if job == "latency" else i
    if system in ("queuewatch", "raw"):
        return qw_message(i, {"job": job, "n": i, "ts": arg if job == "latency" else None})
    if system == "dramatiq":
        return _dramatiq_message(job, arg)
    if system == "celery":
        return _celery_message(job, arg)
    raise ValueError(system)


def _dramatiq_message(job: str, arg: Any) -> aio_pika.Message:
    import dramatiq

    msg = dramatiq.Message(queue_name=QUEUE, actor_name=job, args=(arg,), kwargs={}, options={})
    return aio_pika.Message(msg.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=msg.message_id)


@functools.lru_cache(maxsize=1)
def _celery_app() -> Any:
    from celery import Celery

    return Celery("bench-preload", broker="memory://")


def _celery_message(job: str, arg: Any) -> aio_pika.Message:
    import uuid

    from kombu.serialization import dumps

    task_id = str(uuid.uuid4())
    tm = _celery_app().amqp.as_task_v2(task_id, f"bench.{job}", args=(arg,), kwargs={})
    ctype, encoding, body = dumps(tm.body, serializer="json")
    headers = {k: v for k, v in tm.headers.items() if v is not None}
    return aio_pika.Message(
        body if isinstance(body, bytes) else body.encode(), content_type=ctype,
        content_encoding=encoding, headers=headers, correlation_id=task_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


# -- worker processes ----------------------------------------------------------------------

def start_worker(
    system: str, settings: Settings, job: str, *, concurrency: int, prefetch: int,
    latency_dir: Path | None = None, telemetry: bool = True, max_priority: int | None = 10,
    idempotency: bool = True, extra_env: dict[str, str] | None = None,
    processes: int | None = None,
) -> subprocess.Popen[bytes]:
    """One worker process of ``system`` with ``concurrency`` and ``prefetch``; with
    ``processes``, that many through the system's own multi-process mode (``queuewatch
    worker --processes N``, ``dramatiq -p N``), ``concurrency`` per process."""
    env = {
        "BENCH_AMQP_URL": settings.amqp_url_for(), "BENCH_QUEUE": QUEUE, "BENCH_JOB": job,
        "BENCH_CONCURRENCY": str(concurrency), "BENCH_PREFETCH": str(prefetch),
        "BENCH_LATENCY_DIR": str(latency_dir or "."),
        "BENCH_TELEMETRY": "1" if telemetry else "0",
        "BENCH_IDEMPOTENCY": "1" if idempotency else "0",
        "BENCH_MAX_PRIORITY": str(max_priority or 0),
        "BENCH_VHOST": settings.effective_vhost,
        "BENCH_PEER_PRIORITY": str(max_priority or 0),
        **(extra_env or {}),
    }
    if system == "queuewatch" and processes is not None:
        from bench import qw

        qw.require_worker()
        state = tempfile.mkdtemp(prefix="qwbench-")  # the processes' shared store
        atexit.register(shutil.rmtree, state, True)
        env["QUEUEWATCH_STATE_DIR"] = state
        return procs.python(
            "queuewatch.cli.main", "worker", "bench.apps.qw_app:make_worker", "--processes",
            str(processes), "--amqp-url", settings.amqp_url_for(), "--vhost",
            settings.effective_vhost, env=env, name=f"qw-worker-p{processes}")
    if system == "queuewatch":
        from bench import qw

        qw.require_worker()
        return procs.python("bench.apps.qw_worker", env=env, name="qw-worker")
    if system == "raw":
        return procs.python("bench.apps.raw_consumer", env=env, name="raw-consumer")
    if system == "dramatiq":
        env["dramatiq_queue_prefetch"] = str(prefetch)
        env["BENCH_CONFIRM"] = "0"
        return procs.python(
            "dramatiq", "bench.apps.dramatiq_app", "-p", str(processes or 1), "-t", str(concurrency),
            "-Q", QUEUE, env=env, name="dramatiq",
        )
    if system == "celery":
        return procs.start(
            [sys.executable, "-m", "celery", "-A", "bench.apps.celery_app", "worker",
             "-P", "threads", "-c", str(concurrency), "-Q", QUEUE, "-l", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env, name="celery",
        )
    raise ValueError(system)


def check_available(system: str) -> None:
    """Raise :class:`NotAvailable` when ``system`` cannot run here."""
    try:
        if system == "dramatiq":
            import dramatiq  # noqa: F401
        elif system == "celery":
            import celery  # noqa: F401
        elif system == "queuewatch":
            from bench import qw

            qw.require_worker()
    except ImportError as exc:
        raise NotAvailable(f"{system} is not installed ({exc}); run ./dev bench") from exc


def decode_latency_payload(body: bytes) -> float:
    return float(json.loads(body)["ts"])
