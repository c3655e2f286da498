"""Paused queues and queue-wide rate limits in the monitor's view.

A queue is *paused* when the queue-state stream says so (an operator ran ``queuewatch queues
pause``; read by the session, so known with no worker running) or when a worker reports
its consumer of the queue as not live with cause ``paused`` (the heartbeat). A paused
queue's backlog is expected: it is not orphaned, its lag is not an alarm, and a worker
that does not consume it is not in trouble.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from queuewatch.events.queuestate import QueueState
from queuewatch.monitor.model import QueueStats, WorkerStats
from queuewatch.topology import Topology


def paused_from_workers(workers: Iterable[WorkerStats]) -> set[str]:
    return {c.queue for w in workers for c in w.consumers if not c.live and c.cause == "paused"}


def with_queue_state(queues: Iterable[QueueStats], workers: Iterable[WorkerStats],
                     states: Mapping[str, QueueState] | None,
                     topology: Topology | None, vhost: str) -> list[QueueStats]:
    """The queues with ``paused`` and ``rate_limit`` set (a run-time limit wins over the
    topology's). ``states`` are those of ``vhost`` (the stream lives in it)."""
    states = states or {}
    paused = paused_from_workers(workers)
    configured = {} if topology is None else {
        spec.name: spec.rate_limit for spec in topology.queues if spec.rate_limit is not None}
    out = []
    for q in queues:
        state = states.get(q.name) if q.vhost == vhost else None
        run_time = state.limit if state is not None else None
        limit = run_time.rate if run_time is not None else configured.get(q.name)
        is_paused = q.name in paused or (state is not None and state.paused)
        if is_paused or limit is not None:
            q = replace(q, paused=is_paused, rate_limit=limit)
        out.append(q)
    return out

