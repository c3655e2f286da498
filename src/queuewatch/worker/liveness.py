"""What the worker says about its consumers: when a job time limit cannot outlive the
broker's ``consumer_timeout``, and what happened when the broker closed a consumer's channel.

RabbitMQ closes a channel whose oldest unacknowledged delivery is older than its
``consumer_timeout`` (30 minutes by default): every delivery on it goes back to the queue.
RabbitMQ 3.10 does not expose that value (not over AMQP, not over the management API; the
per-queue ``x-consumer-timeout`` argument and ``consumer-timeout`` policy key exist only from
3.11.15/3.12), so the worker compares against ``settings.broker_consumer_timeout`` at start,
and reads the real value from the broker's own words when a channel is closed for it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable

from queuewatch.telemetry import ConsumerStatus
from queuewatch.topology import QueueSpec
from queuewatch.worker.process import Running
from queuewatch.worker.settle import channel_gone

_TIMEOUT_USED = re.compile(r"Timeout value used: (\d+) ms")


def broker_timeout_from(reason: str | None) -> float | None:
    """The broker's ``consumer_timeout`` in seconds, from its channel-close text."""
    found = _TIMEOUT_USED.search(reason or "")
    return int(found.group(1)) / 1000 if found else None


def timeout_warnings(specs: Iterable[QueueSpec], broker_timeout: float, prefetch: int,
                     concurrency: int) -> list[str]:
    """One line per queue whose jobs can outlast the broker's ``consumer_timeout``."""
    out = []
    rounds = max(math.ceil(prefetch / max(concurrency, 1)), 1)
    for spec in specs:
        limit = spec.timeout
        if limit is None:
            continue
        if limit >= broker_timeout:
            out.append(
                f"queue {spec.name!r}: the job time limit ({limit:g}s) is not below the broker's "
                f"consumer_timeout ({broker_timeout:g}s, setting broker_consumer_timeout): a job "
                "running that long has its channel closed by the broker and runs again; lower "
                "the queue's 'timeout' in the topology or raise consumer_timeout on the broker")
        elif limit * rounds >= broker_timeout:
            out.append(
                f"queue {spec.name!r}: with prefetch {prefetch} and concurrency {concurrency} a "
                f"delivery can wait {rounds} job time limits ({limit * rounds:g}s) before it is "
                f"acked, longer than the broker's consumer_timeout ({broker_timeout:g}s): lower "
                "the prefetch (--prefetch), or the job time limit, or raise consumer_timeout")
    return out


def consumer_timeout_line(state: ConsumerStatus, spec: QueueSpec | None,
                          running: Iterable[Running], assumed: float) -> str:
    """The one line a worker logs when the broker closed a consumer's channel for
    ``consumer_timeout``: what happened, what becomes of the jobs, what to change."""
    jobs = [r for r in running
            if r.queue == state.queue and r.message is not None and channel_gone(r.message)]
    used = broker_timeout_from(state.reason)
    timeout = f"{used:g}s" if used is not None else f"about {assumed:g}s (assumed)"
    held = (", ".join(f"{r.job_id} (running {_age(r):.0f}s)" for r in jobs[:5])
            + (f" and {len(jobs) - 5} more" if len(jobs) > 5 else "")) if jobs else "none running"
    limit = spec.timeout if spec is not None else None
    change = (f"lower the job time limit of {state.queue!r} ('timeout' in the topology, now "
              f"{'none' if limit is None else f'{limit:g}s'}) below it, or raise consumer_timeout "
              "in rabbitmq.conf above the longest job")
    return (f"the broker closed the channel of queue {state.queue!r}: a delivery was not acked "
            f"within its consumer_timeout of {timeout}. Its deliveries went back to the queue; "
            f"jobs still running here ({held}) finish and their redeliveries are skipped as "
            f"duplicates. Consuming again. To avoid it: {change}")



def _age(r: Running) -> float:
    return max(time.time() - r.started_at, 0.0)
