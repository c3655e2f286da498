"""The copies a worker publishes when a job fails: a delayed retry, or a dead letter.

Both keep the job's id, body, content type, priority and headers; the worker publishes the
copy with a confirm and only then acks the original (no hop loses a job).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from queuewatch import envelope
from queuewatch.broker.delivery import Delivery
from queuewatch.topology import (
    DELIVERY_EXCHANGE,
    delay_entry_exchange,
    delay_routing_key,
    without_delay_deaths,
)

REASON_FAILED = "failed"
REASON_NON_RETRYABLE = "non-retryable"
REASON_MALFORMED = "malformed"
REASON_TIMEOUT = "timeout"
REASON_CANCELLED = "cancelled by operator"
#: Longest error message kept in a header.
MAX_ERROR_MESSAGE_CHARS = 2_000


@dataclass(frozen=True)
class Copy:
    """A message to publish (with confirm) before the original is acked."""

    exchange: str
    routing_key: str
    headers: dict[str, Any]


@dataclass(frozen=True)
class Failure:
    """What went wrong in one run of a job."""

    error_type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, type_name: str | None = None) -> Failure:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(type_name or type(exc).__qualname__, str(exc), tb)


def original_route(message: Delivery, queue: str) -> tuple[str, str]:
    """Where the job was published to; a job that came through the delay levels or a shovel
    replay counts as published straight to its queue (that is where a replay should send
    it)."""
    exchange = message.exchange or ""
    if (exchange == DELIVERY_EXCHANGE or exchange.startswith("queuewatch.delay.")
            or envelope.is_shovel_replay(exchange)):
        return "", queue
    return exchange, message.routing_key or queue


def _failure_headers(message: Delivery, failure: Failure, now: int) -> dict[str, Any]:
    headers = dict(message.headers or {})
    headers.pop(envelope.H_TARGET, None)
    # Every copy carries the replay count; a job a shovel replayed counts that replay here
    # (the shovel cannot write headers).
    replays = envelope.replay_count_of(headers) + envelope.is_shovel_replay(message.exchange)
    headers.pop(envelope.LEGACY_REPLAY_COUNT, None)
    headers[envelope.H_REPLAY_COUNT] = replays
    headers.setdefault(envelope.H_FIRST_FAILED_MS, now)
    headers[envelope.H_LAST_FAILED_MS] = now
    headers[envelope.H_ERROR_TYPE] = failure.error_type
    headers[envelope.H_ERROR_MESSAGE] = failure.message[:MAX_ERROR_MESSAGE_CHARS]
    return headers


def retry_copy(
    message: Delivery, queue: str, attempt: int, delay: int, levels: int,
    failure: Failure,
) -> Copy:
    """The job again, ``attempt + 1``, through the delay levels (at least one second)."""
    seconds = min(max(delay, 1), 2**levels - 1)
    headers = without_delay_deaths(_failure_headers(message, failure, envelope.now_ms()))
    headers[envelope.H_ATTEMPT] = attempt + 1
    headers[envelope.H_TARGET] = queue
    headers[envelope.H_DELAY_MS] = seconds * 1000
    return Copy(delay_entry_exchange(levels), delay_routing_key(seconds, levels), headers)


def dead_letter_copy(
    message: Delivery, queue: str, attempt: int, reason: str, failure: Failure,
    worker_id: str,
) -> Copy:
    """The job for ``queue.dlq``, with every header replay and the console need."""
    now = envelope.now_ms()
    headers = _failure_headers(message, failure, now)
    headers.pop(envelope.H_DELAY_MS, None)
    exchange, routing_key = original_route(message, queue)
    headers.update({
        envelope.H_ATTEMPT: attempt,
        envelope.H_DEAD_REASON: reason,
        **envelope.plain_death_headers(reason, failure.error_type),
        envelope.H_TRACEBACK: envelope.truncate(failure.traceback),
        envelope.H_ORIGINAL_EXCHANGE: exchange,
        envelope.H_ORIGINAL_ROUTING_KEY: routing_key,
        envelope.H_ORIGINAL_QUEUE: queue,
        envelope.H_DEAD_QUEUE: queue,
        envelope.H_DEAD_AT_MS: now,
        envelope.H_WORKER: worker_id,
    })
    return Copy("", queue + ".dlq", headers)
