"""What both producers share: turning ``publish(queue, payload, ...)`` into one AMQP message.

The sync (pika) and async (aio-pika) producers differ only in how they send; the exchange,
routing key, body and properties of a job are decided here, once.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from queuewatch import envelope
from queuewatch.events import model as ev
from queuewatch.events.model import Event, Source
from queuewatch.topology import (
    DEFAULT_DELAY_LEVELS,
    Topology,
    check_webhook_url,
    delay_entry_exchange,
    delay_routing_key,
    without_delay_deaths,
)

OCTET_STREAM = "application/octet-stream"
#: Default number of unconfirmed publishes the async producer keeps in flight.
DEFAULT_WINDOW = 256
#: How long ``publish(wait=True)`` keeps retrying a full queue by default (seconds).
DEFAULT_WAIT_TIMEOUT = 30.0
#: Largest body of a delayed job kept in its ``scheduled`` event (for "run now").
RUN_NOW_MAX_BYTES = 65_536
#: Pause between retries of a publish refused by a full queue (seconds).
BACKPRESSURE_RETRY_INTERVAL = 0.05


@dataclass(frozen=True)
class Outgoing:
    """A job ready to be sent: where to, the body, and its AMQP properties."""

    queue: str
    """The job queue the message is for (also for delayed jobs)."""
    exchange: str
    routing_key: str
    body: bytes
    content_type: str
    message_id: str
    timestamp: int
    """Whole seconds since the epoch."""
    headers: dict[str, Any]
    priority: int | None = None


@dataclass(frozen=True)
class Published:
    """The broker confirmed a job."""

    job_id: str
    queue: str
    exchange: str
    routing_key: str
    delay: int = 0
    existing: bool = False
    """``unique_for`` with ``if_exists="return"``: this is the job already holding the key
    (nothing was published)."""
    spooled: bool = False
    """The broker was unreachable: the job is in the producer's outbox (durable on local
    disk), sent with a confirm when the broker is back."""


def delay_levels_of(topology: Topology | int | None) -> int:
    if topology is None:
        return DEFAULT_DELAY_LEVELS
    if isinstance(topology, Topology):
        return topology.delay_levels
    return int(topology)


def cap_of(topology: Topology | int | None, queue: str) -> str | None:
    """The queue's limits as text, when the producer was given a topology that knows them."""
    if isinstance(topology, Topology):
        try:
            return topology.queue(queue).cap
        except KeyError:
            return None
    return None


def encode_payload(payload: Any) -> tuple[bytes, str]:
    """Bytes go as they are (octet-stream); anything else as JSON."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload), OCTET_STREAM
    return json.dumps(payload, separators=(",", ":")).encode(), envelope.JSON


def build(
    queue: str,
    payload: Any,
    *,
    delay_levels: int,
    priority: int | None = None,
    delay: float | None = None,
    job_id: str | None = None,
    idempotency_key: str | None = None,
    headers: Mapping[str, Any] | None = None,
    attempt: int = 1,
    content_type: str | None = None,
    at: datetime | float | None = None,
    webhook: str | None = None,
) -> Outgoing:
    """The message for one job. ``delay`` in seconds (rounded up to whole seconds), or
    ``at``: an absolute time (an aware datetime, or epoch seconds); a time in the past runs
    the job now. ``webhook``: the http(s) URL its completion is POSTed to (checked here)."""
    if priority is not None and not 0 <= priority <= 255:
        raise ValueError(f"priority must be between 0 and 255 (got {priority})")
    if at is not None:
        if delay is not None:
            raise ValueError("give either delay= or at=, not both")
        delay = max(_epoch(at) - time.time(), 0.0)
    if delay is not None and not 0 <= delay < float("inf"):
        raise ValueError(f"delay must be a finite number of seconds >= 0 (got {delay})")
    body, ctype = encode_payload(payload)
    if content_type is not None:
        ctype = content_type
    jid = job_id or envelope.new_job_id()
    now = time.time()
    hdrs = envelope.job_headers(
        attempt=attempt, idempotency_key=idempotency_key, job_id=jid, extra=headers,
        published_ms=int(now * 1000),
    )
    hdrs.setdefault(envelope.H_COPY, envelope.new_job_id()[:12])
    if webhook is not None:
        hdrs[envelope.H_WEBHOOK] = webhook
    if envelope.H_WEBHOOK in hdrs:  # also when given as a header: refused now, not later
        check_webhook_url(hdrs[envelope.H_WEBHOOK], f"job {jid}")
    exchange, routing_key = "", queue
    seconds = 0
    if delay is not None and delay > 0:
        seconds = math.ceil(delay)
        routing_key = delay_routing_key(seconds, delay_levels)
        exchange = delay_entry_exchange(delay_levels)
        hdrs = without_delay_deaths(hdrs)  # a job re-sent with its x-death would be dropped
        hdrs[envelope.H_TARGET] = queue
        hdrs[envelope.H_DELAY_MS] = int(delay * 1000)
    return Outgoing(
        queue=queue, exchange=exchange, routing_key=routing_key, body=body,
        content_type=ctype, message_id=jid, timestamp=int(now), headers=hdrs, priority=priority,
    )


def _epoch(at: datetime | float) -> float:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("at= needs a time zone (a naive datetime is ambiguous): "
                             "use datetime.now(UTC) + timedelta(...)")
        return at.timestamp()
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError(f"at= must be an aware datetime or epoch seconds (got {at!r})")
    return float(at)


def published(out: Outgoing) -> Published:
    delay = math.ceil(int(out.headers.get(envelope.H_DELAY_MS, 0)) / 1000) if out.exchange else 0
    return Published(out.message_id, out.queue, out.exchange, out.routing_key, delay)


def accepted_event(out: Outgoing, source: Source) -> Event:
    """The event a confirmed job records: ``accepted`` (``scheduled`` with its due time when
    it was delayed)."""
    published_ms = out.headers.get(envelope.H_PUBLISHED_MS)
    at = published_ms if isinstance(published_ms, int) else envelope.now_ms()
    delay_ms = out.headers.get(envelope.H_DELAY_MS) if out.exchange else None
    data: dict[str, Any] = {}
    if out.priority is not None:
        data["priority"] = out.priority
    if isinstance(out.headers.get(envelope.H_WEBHOOK), str):
        data["webhook"] = out.headers[envelope.H_WEBHOOK]
    kind = ev.ACCEPTED
    if isinstance(delay_ms, int) and delay_ms > 0:
        kind = ev.SCHEDULED
        data["due"] = at + delay_ms
        if len(out.body) <= RUN_NOW_MAX_BYTES:  # kept, so an operator can run it now
            data["message"] = {
                "body": base64.b64encode(out.body).decode(), "content_type": out.content_type,
                "priority": out.priority, "copy": out.headers.get(envelope.H_COPY),
                "headers": {k: v for k, v in out.headers.items()
                            if isinstance(v, str | int | float | bool)},
            }
    # Stamped with the publish time (not the confirm's): a fast worker may start the job
    # before the confirm comes back, and the timeline must not show it started first.
    return Event(kind, out.message_id, out.queue, envelope.attempt_of(out.headers), source,
                 at_ms=at, data=data)
