"""Job properties and headers: the contract between producers, workers, the DLQ and the console.

A queuewatch job is an AMQP message with:

* ``message_id`` = the job id (the idempotency key unless one is given explicitly),
* ``timestamp`` = publish time in whole seconds (RabbitMQ reports the age of a queue's head
  from it: ``head_message_timestamp``),
* ``delivery_mode`` = 2 (persistent), a ``content_type``, and ``priority`` if set,
* the ``x-qw-*`` headers below.

Dead letters carry the ``x-qw-dead-*`` / ``x-qw-error-*`` headers so that replay can send
them back where they came from without guessing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

# -- headers every job carries -----------------------------------------------------------
H_PUBLISHED_MS = "x-qw-published-ms"
"""Publish time in milliseconds since the epoch (``timestamp`` has only seconds)."""
H_ATTEMPT = "x-qw-attempt"
"""1 for the first run; incremented on every retry."""
H_IDEMPOTENCY_KEY = "x-qw-idempotency-key"
"""Set when the caller's key differs from the job id."""
H_TARGET = "qw-target"
"""The job queue a delayed message is headed for. No ``x-`` prefix: headers exchanges ignore
headers starting with ``x-`` when matching, and the delivery exchange matches on this one."""
H_DELAY_MS = "x-qw-delay-ms"
"""The delay asked for, for the record."""
H_UNIQUE = "x-qw-unique"
"""The lock queue of a job published with ``unique_for`` (the worker releases it when the
job finishes)."""
H_COPY = "x-qw-copy"
"""Which publish of the job this message is (a fresh id per publish; kept by retries). A
cancel of one copy ("run now" of a scheduled job) skips only that one."""
H_WEBHOOK = "x-qw-webhook"
"""The URL this job's completion webhook goes to (``publish(..., headers={H_WEBHOOK: url})``,
or ``build(webhook=url)``); checked when the message is built, recorded in the job's accepted
event, where the webhook dispatcher finds it."""

# -- headers a dead letter carries --------------------------------------------------------
H_DEAD_REASON = "x-qw-dead-reason"
"""Why the job died: ``failed`` (attempts exhausted), ``non-retryable``, ``malformed``,
``timeout``, ``cancelled by operator``."""
H_ERROR_TYPE = "x-qw-error-type"
H_ERROR_MESSAGE = "x-qw-error-message"
H_TRACEBACK = "x-qw-traceback"
H_FIRST_FAILED_MS = "x-qw-first-failed-ms"
H_LAST_FAILED_MS = "x-qw-last-failed-ms"
H_ORIGINAL_EXCHANGE = "x-qw-original-exchange"
H_ORIGINAL_ROUTING_KEY = "x-qw-original-routing-key"
H_ORIGINAL_QUEUE = "x-qw-original-queue"
H_DEAD_AT_MS = "x-qw-dead-at-ms"
H_WORKER = "x-qw-worker"
H_DEAD_QUEUE = "qw-dead-queue"
"""The queue the job died in (as ``x-qw-original-queue``). No ``x-`` prefix: a replay through
a shovel sends a dead letter back only to the queue this names, matched per message."""
H_REPLAY_COUNT = "qw-replay-count"
"""How many times this message was replayed out of a DLQ (guards poison loops). The worker
writes it on every dead letter (0 for a first death). No ``x-`` prefix: a replay through a
shovel sorts dead letters by it in a headers exchange, which ignores ``x-`` headers."""
H_DEAD_REASON_PLAIN = "qw-dead-reason"
"""``x-qw-dead-reason`` in lower case, without the ``x-`` prefix: a filtered replay through
a shovel (``--reason``, case-insensitive) matches it in a headers exchange."""
H_ERROR_TYPE_PLAIN = "qw-error-type"
"""The same value as ``x-qw-error-type``, without the ``x-`` prefix (``--error-type`` with
a dot, through a shovel)."""
H_ERROR_NAME_PLAIN = "qw-error-name"
"""The last dotted part of ``x-qw-error-type`` (``--error-type`` without a dot matches it)."""


def plain_death_headers(reason: str, error_type: str) -> dict[str, str]:
    """The death headers a headers exchange can match (it ignores ``x-`` ones), written
    beside ``x-qw-dead-reason`` and ``x-qw-error-type`` on every dead letter."""
    return {H_DEAD_REASON_PLAIN: reason.lower(), H_ERROR_TYPE_PLAIN: error_type,
            H_ERROR_NAME_PLAIN: error_type.rsplit(".", 1)[-1]}
LEGACY_REPLAY_COUNT = "x-qw-replay-count"
"""Where queuewatch 0.1 kept the replay count (still read; written by nothing)."""

#: Exchanges a shovel replay publishes through (``queuewatch.replay.<id>``). A job delivered
#: from one was replayed: the worker gives it fresh attempts and counts the replay.
REPLAY_EXCHANGE_PREFIX = "queuewatch.replay."

JSON = "application/json"
#: Longest traceback text stored in a dead letter's headers (the broker caps frame sizes).
MAX_TRACEBACK_CHARS = 8_000


def new_job_id() -> str:
    """A fresh job id (uuid4 hex: 32 characters, no dashes)."""
    return uuid.uuid4().hex


#: Longest ``message_id`` (an AMQP short string), in bytes of UTF-8.
MAX_MESSAGE_ID_BYTES = 255
#: Bodies larger than this are not parsed for a job id (Dramatiq messages are small).
MAX_ID_BODY = 1024 * 1024


def job_id_of(message_id: str | None, headers: Mapping[str, Any] | None,
              body: bytes) -> str | None:
    """The job id of a message: its ``message_id``; else Celery's ``id`` header; else the id
    in a Dramatiq or Celery protocol 1 JSON body (:func:`body_job_id`); None without any.

    Foreign clients (plain pika, Celery, Dramatiq) publish without a ``message_id``; the
    worker, the DLQ and the console all find a job by this one id."""
    if message_id:
        return message_id
    celery = (headers or {}).get("id")
    return (str(_text(celery)) if celery is not None else "") or body_job_id(body)


def body_job_id(body: bytes) -> str | None:
    """The job id a foreign message carries in its JSON body: Dramatiq's ``message_id``
    (with ``actor_name``), Celery protocol 1's ``id`` (with ``task``); else None."""
    if len(body) > MAX_ID_BODY or body[:1] != b"{":
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if "actor_name" in data and isinstance(data.get("message_id"), str):
        return str(data["message_id"])
    if "task" in data and isinstance(data.get("id"), str):
        return str(data["id"])
    return None


def fits_message_id(value: str) -> bool:
    """Whether ``value`` can be a ``message_id`` (at most 255 bytes of UTF-8)."""
    return len(value.encode("utf-8", "surrogatepass")) <= MAX_MESSAGE_ID_BYTES


def now_ms() -> int:
    return int(time.time() * 1000)


def job_headers(
    *,
    attempt: int = 1,
    idempotency_key: str | None = None,
    job_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    published_ms: int | None = None,
) -> dict[str, Any]:
    """Headers for a freshly published job."""
    headers: dict[str, Any] = dict(extra or {})
    headers[H_PUBLISHED_MS] = now_ms() if published_ms is None else published_ms
    headers[H_ATTEMPT] = attempt
    if idempotency_key is not None and idempotency_key != job_id:
        headers[H_IDEMPOTENCY_KEY] = idempotency_key
    return headers


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    """The attempt number recorded in ``headers`` (1 when absent or invalid)."""
    if not headers:
        return 1
    try:
        value = int(headers.get(H_ATTEMPT, 1))
    except (TypeError, ValueError):
        return 1
    return max(value, 1)


def idempotency_key_of(message_id: str | None, headers: Mapping[str, Any] | None) -> str | None:
    """The key under which a job's completion is recorded."""
    if headers and headers.get(H_IDEMPOTENCY_KEY):
        return str(_text(headers[H_IDEMPOTENCY_KEY]))
    return message_id


def replay_count_of(headers: Mapping[str, Any] | None) -> int:
    """Replays so far (0 when absent or invalid)."""
    if not headers:
        return 0
    try:
        return max(int(headers.get(H_REPLAY_COUNT, headers.get(LEGACY_REPLAY_COUNT, 0))), 0)
    except (TypeError, ValueError, OverflowError):  # e.g. a double header of inf
        return 0


def is_shovel_replay(exchange: str | None) -> bool:
    """Whether a delivery came through a shovel replay's exchange."""
    return bool(exchange) and str(exchange).startswith(REPLAY_EXCHANGE_PREFIX)


def _text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value


def truncate(text: str, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """Keep the end of a long text (a traceback's last frames matter most)."""
    if len(text) <= limit:
        return text
    return "...(truncated)...\n" + text[-limit:]
