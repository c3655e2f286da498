"""Dead letters as values: what a message is, why it died, and where it came from.

A :class:`DeadLetter` is built from one AMQP delivery of a DLQ (body, properties, headers)
and never talks to the broker. Death information comes from queuewatch's own ``x-qw-*``
headers when a queuewatch worker parked the job, else from RabbitMQ's ``x-death`` /
``x-first-death-*`` headers (foreign queues: Celery, Dramatiq, plain pika services).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from queuewatch import envelope as env
from queuewatch.dlq.decode import decode_body, header_text, to_epoch_ms
from queuewatch.dlq.decode import format_ms as format_ms  # re-exported (cmd_dlq, tui)

BodyKind = Literal["json", "text", "hex"]
DeathSource = Literal["queuewatch", "x-death", "none"]


@dataclass(frozen=True)
class Route:
    """Where a message is published to: exchange (``""`` = default) and routing key."""

    exchange: str
    routing_key: str

    def describe(self) -> str:
        return f"{self.exchange or '(default)'} -> {self.routing_key}"


@dataclass(frozen=True)
class DeathInfo:
    """Why and when a message died, and the route it was on."""

    source: DeathSource
    """``queuewatch`` headers, RabbitMQ's ``x-death``, or ``none`` (no death information)."""
    reason: str | None = None
    """queuewatch reason (``failed``, ``cancelled by operator``...) or x-death reason
    (``rejected``, ``expired``, ``maxlen``, ``delivery_limit``)."""
    attempts: int | None = None
    """queuewatch attempt number, or the x-death ``count``."""
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    original_exchange: str | None = None
    original_routing_key: str | None = None
    original_queue: str | None = None
    first_death_ms: int | None = None
    last_death_ms: int | None = None

    @property
    def route(self) -> Route | None:
        """The route a replay sends the message back on, or None when unknown."""
        if self.original_exchange is None and self.original_queue is None:
            return None
        exchange = self.original_exchange or ""
        if exchange == "":
            # The default exchange routes by queue name.
            key = self.original_queue or self.original_routing_key
            return None if not key else Route("", key)
        return Route(exchange, self.original_routing_key or "")


@dataclass(frozen=True)
class DeadLetter:
    """One message of a DLQ, decoded for people and for replay."""

    position: int
    """0-based position in the DLQ when it was read (head = 0)."""
    message_id: str | None
    job_id: str | None
    """The queuewatch job id (= ``message_id``), else the Celery task id (header ``id``) or
    the id in a Dramatiq/Celery JSON body, for foreign messages."""
    body: bytes
    headers: Mapping[str, Any]
    properties: Mapping[str, Any]
    """AMQP basic properties except ``headers`` (``None`` values left out)."""
    death: DeathInfo
    replay_count: int
    redelivered: bool = False
    routing_key: str = ""
    """The routing key the message reached the DLQ with."""
    size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", len(self.body))

    @cached_property
    def _decoded(self) -> tuple[BodyKind, str]:
        # Decoded on first use: a bulk replay never pays for pretty-printing.
        return decode_body(self.body, self.properties.get("content_type"))

    @property
    def body_kind(self) -> BodyKind:
        """``json``, ``text`` (UTF-8) or ``hex`` (anything else)."""
        return self._decoded[0]

    @property
    def body_pretty(self) -> str:
        """Pretty JSON, the text itself, or a hex dump."""
        return self._decoded[1]

    @property
    def age_seconds(self) -> float | None:
        """Seconds since the (last) death, else since publication; None if unknown."""
        ms = self.death.last_death_ms or published_ms(self.headers, self.properties)
        if ms is None:
            return None
        return max(env.now_ms() - ms, 0) / 1000.0

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-friendly summary (one row of ``dlq list``)."""
        d = self.death
        return {
            "position": self.position, "job_id": self.job_id, "message_id": self.message_id,
            "reason": d.reason, "error_type": d.error_type, "error_message": d.error_message,
            "attempts": d.attempts, "replay_count": self.replay_count, "size": self.size,
            "route": d.route.describe() if d.route else None, "source": d.source,
            "last_death_ms": d.last_death_ms, "body_kind": self.body_kind,
        }


def published_ms(headers: Mapping[str, Any], properties: Mapping[str, Any]) -> int | None:
    if env.H_PUBLISHED_MS in headers:
        return to_epoch_ms(headers[env.H_PUBLISHED_MS])
    ts = properties.get("timestamp")
    return to_epoch_ms(ts) if ts is not None else None


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(header_text(value))
    except (TypeError, ValueError, OverflowError):  # text, NaN, infinity
        return None


def _str(value: Any) -> str | None:
    return None if value is None else str(header_text(value))


def death_from_queuewatch(h: Mapping[str, Any]) -> DeathInfo:
    return DeathInfo(
        source="queuewatch",
        reason=_str(h.get(env.H_DEAD_REASON)),
        attempts=_int(h.get(env.H_ATTEMPT)),
        error_type=_str(h.get(env.H_ERROR_TYPE)),
        error_message=_str(h.get(env.H_ERROR_MESSAGE)),
        traceback=_str(h.get(env.H_TRACEBACK)),
        original_exchange=_str(h.get(env.H_ORIGINAL_EXCHANGE)),
        original_routing_key=_str(h.get(env.H_ORIGINAL_ROUTING_KEY)),
        original_queue=_str(h.get(env.H_ORIGINAL_QUEUE)),
        first_death_ms=_int(h.get(env.H_FIRST_FAILED_MS)),
        last_death_ms=_int(h.get(env.H_DEAD_AT_MS)) or _int(h.get(env.H_LAST_FAILED_MS)),
    )


def _pick_x_death(entries: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The death that parked the message: the most recent consumer rejection if there is
    one (a retry cycle through TTL queues adds ``expired`` entries), else the newest entry.
    RabbitMQ keeps ``x-death`` newest first."""
    for entry in entries:
        if header_text(entry.get("reason")) == "rejected":
            return entry
    return entries[0]


def death_from_x_death(h: Mapping[str, Any]) -> DeathInfo:
    raw = h.get("x-death")
    entries = [e for e in raw if isinstance(e, Mapping)] if isinstance(raw, list) else []
    if not entries:
        return DeathInfo(
            source="x-death",
            reason=_str(h.get("x-first-death-reason")),
            original_exchange=_str(h.get("x-first-death-exchange")),
            original_queue=_str(h.get("x-first-death-queue")),
        )
    chosen = _pick_x_death(entries)
    keys = chosen.get("routing-keys")
    key = _str(keys[0]) if isinstance(keys, list) and keys else None
    times = [to_epoch_ms(e.get("time")) for e in entries if e.get("time") is not None]
    times_ok = [t for t in times if t is not None]
    return DeathInfo(
        source="x-death",
        reason=_str(chosen.get("reason")),
        attempts=sum(_int(e.get("count")) or 0 for e in entries) or None,
        original_exchange=_str(chosen.get("exchange")),
        original_routing_key=key,
        original_queue=_str(chosen.get("queue")),
        first_death_ms=min(times_ok) if times_ok else None,
        last_death_ms=max(times_ok) if times_ok else None,
    )


def death_info(headers: Mapping[str, Any]) -> DeathInfo:
    """queuewatch headers first, then RabbitMQ's ``x-death``."""
    if env.H_DEAD_REASON in headers or env.H_ORIGINAL_QUEUE in headers:
        return death_from_queuewatch(headers)
    if "x-death" in headers or "x-first-death-queue" in headers:
        return death_from_x_death(headers)
    return DeathInfo(source="none")


#: Name prefix of the shovels ``replay(via_shovel=True)`` creates.
REPLAY_SHOVEL_PREFIX = "queuewatch-replay-"


def replay_count(headers: Mapping[str, Any]) -> int:
    """Replays so far (the worker folds shovel replays into the header; see
    :mod:`queuewatch.dlq.shovel`)."""
    return min(env.replay_count_of(headers), MAX_REPLAY_COUNT)


#: A replay count beyond any real one (a double header of 1e300): kept below 2^63 so that
#: the count written on the next replay is still an AMQP integer.
MAX_REPLAY_COUNT = 2**62


# One set of rules for a message's job id, shared with the worker and the console
# (envelope.py); re-exported here for the DLQ's callers.
job_id_of = env.job_id_of
body_job_id = env.body_job_id
MAX_ID_BODY = env.MAX_ID_BODY


def message_id_for_copy(message_id: str | None, headers: Mapping[str, Any] | None,
                        body: bytes) -> str | None:
    """The ``message_id`` a replayed or imported copy is published with: its own; else its
    job id (a Celery or Dramatiq message keeps the id it is found by: the AMQP client would
    give it a random one); None when there is none, or it is too long for the property."""
    if message_id:
        return message_id
    job_id = job_id_of(None, headers, body)
    if job_id is None or not env.fits_message_id(job_id):
        return None
    return job_id


def make_dead_letter(
    *,
    position: int,
    body: bytes,
    properties: Mapping[str, Any],
    headers: Mapping[str, Any] | None,
    redelivered: bool = False,
    routing_key: str = "",
) -> DeadLetter:
    h: Mapping[str, Any] = headers or {}
    message_id = properties.get("message_id")
    return DeadLetter(
        position=position,
        message_id=message_id,
        job_id=job_id_of(message_id, h, body),
        body=body,
        headers=h,
        properties={k: v for k, v in properties.items() if v is not None and k != "headers"},
        death=death_info(h),
        replay_count=replay_count(h),
        redelivered=redelivered,
        routing_key=routing_key,
    )


