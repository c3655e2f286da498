"""Operator actions on stuck jobs and hung workers.

* :func:`cancel_job` sends a :class:`~queuewatch.telemetry.ControlCommand` to the worker
  holding the job (found from heartbeats when not named); the worker cancels the handler
  and parks the job in the DLQ with reason ``cancelled by operator``.
* :func:`terminate_worker` ends a hung worker process on this host: SIGTERM, then SIGKILL
  after a grace period. Its AMQP connection dies with it, so the broker requeues every
  delivery it held (nothing is lost; a job may run twice: idempotency keys cover that).
* :func:`pause_queue` / :func:`resume_queue` / :func:`limit_queue` control a queue over
  every worker; :func:`publish_test_job` sends a small job through the real producer.

Both refuse in read-only mode before touching anything, and both write the audit log.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
from dataclasses import dataclass

import psutil

from queuewatch.audit import AuditLog, current_user, require_writable
from queuewatch.broker.errors import ChannelNotFound
from queuewatch.broker.publish import ConfirmedPublisher, Outcome, Properties
from queuewatch.broker.types import Connection as AbstractConnection
from queuewatch.config import Settings
from queuewatch.errors import BrokerError, NotFound, QueuewatchError
from queuewatch.events.queuestate import LimitSpec, append_change, new_change
from queuewatch.producer import AsyncProducer, Published
from queuewatch.telemetry import (
    HEARTBEAT_KEY_PREFIX,
    ControlCommand,
    Heartbeat,
    control_routing_key,
    listener_queue_name,
)

#: Heartbeats come about once a second; listen this long to hear every live worker.
LISTEN_SECONDS = 2.5
TERMINATE_GRACE = 10.0
#: Command lines that identify a queuewatch worker process.
WORKER_CMDLINE = re.compile(r"queuewatch(?:\.cli\.main)?\s+worker\b|queuewatch-worker")


class OperatorError(QueuewatchError):
    """An operator action was refused or could not be carried out."""


@dataclass(frozen=True)
class CancelResult:
    job_id: str
    worker_id: str


@dataclass(frozen=True)
class TerminateResult:
    pid: int
    signal: str
    """``SIGTERM`` if that was enough, else ``SIGKILL``."""
    seconds: float


async def listen_heartbeats(
    connection: AbstractConnection, settings: Settings, seconds: float = LISTEN_SECONDS,
) -> dict[str, Heartbeat]:
    """The latest heartbeat of every worker heard within ``seconds``."""
    beats: dict[str, Heartbeat] = {}
    channel = await connection.channel()
    try:
        try:
            exchange = await channel.get_exchange(settings.telemetry_exchange)
        except ChannelNotFound as exc:
            raise NotFound(f"no telemetry exchange {settings.telemetry_exchange!r}: "
                           "no queuewatch worker has run on this vhost") from exc
        queue = await channel.declare_queue(listener_queue_name(), exclusive=True,
                                            auto_delete=True, durable=False)
        await queue.bind(exchange, routing_key=HEARTBEAT_KEY_PREFIX + "#")
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            message = await queue.get(no_ack=True, fail=False, timeout=5)
            if message is None:
                await asyncio.sleep(min(0.1, left))
                continue
            try:
                beat = Heartbeat.from_json(message.body)
            except (ValueError, TypeError):
                continue
            beats[beat.worker_id] = beat
    finally:
        await channel.close()
    return beats


async def find_worker_for_job(
    connection: AbstractConnection, settings: Settings, job_id: str,
    seconds: float = LISTEN_SECONDS,
) -> Heartbeat | None:
    beats = await listen_heartbeats(connection, settings, seconds)
    for beat in beats.values():
        if any(j.job_id == job_id for j in beat.in_flight):
            return beat
    return None


async def cancel_job(
    connection: AbstractConnection, settings: Settings, job_id: str,
    worker_id: str | None = None, *, reason: str = "cancelled by operator",
    audit: AuditLog | None = None,
) -> CancelResult:
    """Ask the worker holding ``job_id`` to cancel it (the job goes to the DLQ)."""
    require_writable(settings, "cancel")
    audit = audit or AuditLog.from_settings(settings)
    audit.check()
    target = {"vhost": settings.effective_vhost, "job_id": job_id, "worker_id": worker_id}
    try:
        if worker_id is None:
            beat = await find_worker_for_job(connection, settings, job_id)
            if beat is None:
                raise NotFound(f"no worker reports job {job_id!r} in flight (heard for "
                               f"{LISTEN_SECONDS:g}s); name the worker with --worker")
            worker_id = beat.worker_id
            target["worker_id"] = worker_id
        command = ControlCommand(action="cancel", job_id=job_id, reason=reason,
                                 requested_by=f"{current_user()}@{socket.gethostname()}")
        await _publish_control(connection, settings, worker_id, command)
    except QueuewatchError as exc:
        audit.record("cancel", target, "error", detail=str(exc))
        raise
    audit.record("cancel", target, "ok", count=1)
    return CancelResult(job_id, worker_id)


#: Longest wait for the broker to confirm an operator command (seconds).
COMMAND_TIMEOUT = 10.0


async def _publish_control(
    connection: AbstractConnection, settings: Settings, worker_id: str, command: ControlCommand,
) -> None:
    publisher = ConfirmedPublisher(connection, confirm_timeout=COMMAND_TIMEOUT)
    try:
        result = await publisher.publish(
            command.to_json(), exchange=settings.control_exchange,
            routing_key=control_routing_key(worker_id),
            properties=Properties(content_type="application/json"), link_timeout=COMMAND_TIMEOUT)
    finally:
        await publisher.close()
    if result.outcome is Outcome.UNROUTABLE and "does not exist" in result.detail:
        raise NotFound(f"no control exchange {settings.control_exchange!r} on this vhost")
    if result.outcome is Outcome.UNROUTABLE:
        raise NotFound(f"worker {worker_id!r} is not listening for commands "
                       "(not running, or not a queuewatch worker)")
    if not result.ok:
        raise BrokerError(f"sending the command to {worker_id!r} failed: {result.detail}")


# -- terminating a hung worker ---------------------------------------------------------------
def is_queuewatch_worker(proc: psutil.Process, known_pids: frozenset[int] = frozenset()) -> bool:
    """A process on this host that runs a queuewatch worker: its pid is in a heartbeat from
    this host, or its command line is ``queuewatch worker ...``."""
    if proc.pid in known_pids:
        return True
    try:
        return bool(WORKER_CMDLINE.search(" ".join(proc.cmdline())))
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return False


def terminate_worker(
    settings: Settings, pid: int, *, grace: float = TERMINATE_GRACE,
    known_pids: frozenset[int] = frozenset(), audit: AuditLog | None = None,
    worker_id: str | None = None,
) -> TerminateResult:
    """SIGTERM ``pid``, SIGKILL it after ``grace`` seconds; refuses non-worker processes."""
    require_writable(settings, "terminate")
    audit = audit or AuditLog.from_settings(settings)
    audit.check()
    target = {"host": socket.gethostname(), "pid": pid, "worker_id": worker_id}
    try:
        result = _terminate(pid, grace, known_pids)
    except QueuewatchError as exc:
        audit.record("terminate", target, "error", detail=str(exc))
        raise
    audit.record("terminate", target, "ok", count=1, detail=result.signal)
    return result


def _terminate(pid: int, grace: float, known_pids: frozenset[int]) -> TerminateResult:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        raise NotFound(f"no process {pid} on this host") from None
    if not is_queuewatch_worker(proc, known_pids):
        raise OperatorError(f"refused: process {pid} is not a queuewatch worker on this host")
    start = time.monotonic()
    try:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
            return TerminateResult(pid, "SIGTERM", time.monotonic() - start)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return TerminateResult(pid, "SIGKILL", time.monotonic() - start)
    except psutil.NoSuchProcess:
        return TerminateResult(pid, "SIGTERM", time.monotonic() - start)
    except psutil.AccessDenied as exc:
        raise OperatorError(f"not allowed to signal process {pid}: {exc}") from exc


async def worker_pid(
    connection: AbstractConnection, settings: Settings, worker_id: str,
) -> tuple[int, frozenset[int]]:
    """The pid of ``worker_id`` from its heartbeat (it must run on this host), and every
    worker pid heard from this host."""
    beats = await listen_heartbeats(connection, settings)
    host = socket.gethostname()
    local = frozenset(b.pid for b in beats.values() if b.host == host)
    beat = beats.get(worker_id)
    if beat is None:
        raise NotFound(f"worker {worker_id!r} sent no heartbeat in {LISTEN_SECONDS:g}s; "
                       "a hung worker may have stopped beating: use --pid")
    if beat.host != host:
        raise OperatorError(f"worker {worker_id!r} runs on {beat.host!r}, not on this host")
    return beat.pid, local


# -- pausing, resuming and limiting a queue (every worker, durable) ----------------------------
async def pause_queue(connection: AbstractConnection, settings: Settings, queue: str, *,
                      audit: AuditLog | None = None) -> None:
    """Every worker stops taking jobs from ``queue`` (running ones finish), now and after a
    restart, until :func:`resume_queue` (see :mod:`queuewatch.events.queuestate`)."""
    await _queue_change(connection, settings, queue, "pause", None, audit)


async def resume_queue(connection: AbstractConnection, settings: Settings, queue: str, *,
                       audit: AuditLog | None = None) -> None:
    await _queue_change(connection, settings, queue, "resume", None, audit)


async def limit_queue(connection: AbstractConnection, settings: Settings, queue: str,
                      limit: LimitSpec, *, audit: AuditLog | None = None) -> None:
    """Set ``queue``'s queue-wide rate limit at run time (over every worker; a limit with
    neither rate removes it). Workers apply it within about a second."""
    await _queue_change(connection, settings, queue, "limit", limit, audit)


async def _queue_change(connection: AbstractConnection, settings: Settings, queue: str,
                        kind: str, limit: LimitSpec | None, audit: AuditLog | None) -> None:
    action = f"queue_{kind}"
    require_writable(settings, action)
    audit = audit or AuditLog.from_settings(settings)
    audit.check()
    target = {"vhost": settings.effective_vhost, "queue": queue}
    detail = "" if limit is None else (f"rate={limit.rate} per_key={limit.per_key} "
                                       f"key={limit.key}")
    try:
        await append_change(connection, settings.control_exchange, new_change(
            queue, kind, f"{current_user()}@{socket.gethostname()}", limit),
            timeout=COMMAND_TIMEOUT)
    except QueuewatchError as exc:
        audit.record(action, target, "error", detail=str(exc))
        raise
    audit.record(action, target, "ok", count=1, detail=detail)


# -- a test job (the real producer: an id, a confirm, job events) -----------------------------
def sample_job_payload() -> dict[str, object]:
    """The small JSON body of a test job: says what it is and who sent it."""
    return {"queuewatch_test": True, "sent_by": f"{current_user()}@{socket.gethostname()}",
            "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


async def publish_test_job(settings: Settings, queue: str, *, payload: object = None,
                           audit: AuditLog | None = None) -> Published:
    """Publish ``payload`` (default :func:`sample_job_payload`) to ``queue`` with the
    producer (confirmed, mandatory, recorded as ``accepted`` in the job events); audited as
    ``publish_test``."""
    require_writable(settings, "publish_test")
    audit = audit or AuditLog.from_settings(settings)
    audit.check()
    target = {"vhost": settings.effective_vhost, "queue": queue}
    try:
        async with AsyncProducer(settings, connection_name="queuewatch-test-job") as producer:
            published = await producer.publish(
                queue, sample_job_payload() if payload is None else payload,
                timeout=COMMAND_TIMEOUT)
    except QueuewatchError as exc:
        audit.record("publish_test", target, "error", detail=str(exc))
        raise
    audit.record("publish_test", target, "ok", count=1, detail=f"job {published.job_id}")
    return published
