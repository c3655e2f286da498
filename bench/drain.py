"""One measurement shape shared by the worker benchmarks: preload a backlog, start one
worker process, time the drain (exact depth by passive declare), stop the worker."""

from __future__ import annotations

from bench import peers, procs
from bench.amqp_tools import DepthProbe, preload, time_drain
from bench.cpu import CpuWindow
from bench.harness import Bench, Measure
from queuewatch.config import Settings


async def drain_rate(
    settings: Settings, system: str, job: str, count: int, *, concurrency: int, prefetch: int,
    telemetry: bool = True, max_priority: int | None = 10, priorities: bool = False,
    idempotency: bool = True, processes: int | None = None, cpu: CpuWindow | None = None,
) -> float:
    """Jobs per second one ``system`` worker process (``processes``: that many, through
    the system's own multi-process mode) drains a backlog of ``count`` at."""
    await peers.setup_queue(system, settings, max_priority)

    def make(i: int):  # type: ignore[no-untyped-def]
        msg = peers.message(system, job, i)
        if priorities and max_priority:
            msg.priority = i % (max_priority + 1)
        return msg

    await preload(settings, peers.QUEUE, count, make)
    proc = peers.start_worker(
        system, settings, job, concurrency=concurrency, prefetch=prefetch,
        telemetry=telemetry, max_priority=max_priority, idempotency=idempotency,
        processes=processes,
    )
    with procs.running(proc):
        seconds = await time_drain(settings, peers.QUEUE, count, proc, cpu=cpu)
    if system in ("queuewatch", "raw"):
        await _check_no_dead_letters(settings)
    return count / seconds


async def _check_no_dead_letters(settings: Settings) -> None:
    probe = await DepthProbe.open(settings)
    try:
        dead, _ = await probe.counts(peers.QUEUE + ".dlq")
    finally:
        await probe.close()
    if dead:
        raise RuntimeError(f"{dead} jobs were dead-lettered: the measurement is invalid")


def rate_measure(
    bench: Bench, system: str, job: str, count: int, *, concurrency: int | None = None,
    prefetch: int | None = None, telemetry: bool = True, idempotency: bool = True,
    max_priority: int | None = 10, priorities: bool = False, processes: int | None = None,
    cpu: CpuWindow | None = None,
) -> Measure:
    """A measurement (for :func:`~bench.harness.compare`) of ``drain_rate`` (``cpu`` gets
    each drain's CPU use)."""
    conc = concurrency or bench.config.concurrency
    pre = prefetch or bench.prefetch

    async def measure(settings: Settings) -> float:
        peers.check_available(system)
        return await drain_rate(settings, system, job, count, concurrency=conc, prefetch=pre,
                                telemetry=telemetry, idempotency=idempotency,
                                max_priority=max_priority, priorities=priorities,
                                processes=processes, cpu=cpu)
    return measure
