"""Queue specs -> declared exchanges and queues, and a clear diagnosis when they differ.

Naming conventions for a job queue ``Q`` (documented in the README):

* ``Q``            classic durable queue: ``x-max-priority``, ``x-max-length(-bytes)`` with
                   ``x-overflow: reject-publish`` (back-pressure), dead-letter fallback to ``Q.dlq``;
* ``Q.dlq``        the parking lot for dead letters (classic, durable);
* ``queuewatch.delay.<n>``  delay levels shared by the vhost: quorum queues with a fixed
                   ``x-message-ttl`` of 2**n seconds, dead-lettering **at-least-once** onward;
* ``queuewatch.delivery``   headers exchange that hands an expired delayed message to its
                   job queue's due queue (binding ``qw-target = Q``);
* ``queuewatch.due.Q``      the last hop of ``Q``'s delayed jobs and retries: a quorum queue
                   with ``x-message-ttl: 0`` dead-lettering **at-least-once** into ``Q``. When
                   ``Q`` is capped and full, its due jobs wait here (and in this queue's own
                   dead-letter worker) until it has room, and no other queue's do: the delay
                   levels, shared by the vhost, never dead-letter into a capped queue;
* ``queuewatch.telemetry`` / ``queuewatch.control``  topic exchanges for worker heartbeats and
                   operator commands (transient).

Delays use binary levels (as NServiceBus does): a delay of ``d`` seconds is written as the bits
of ``d`` in the routing key; level exchange ``n`` sends the message into the level-``n`` queue if
bit ``n`` is set, else on to level ``n-1``. Each level has one fixed TTL, so nothing waits behind
a longer-lived message (no head-of-line blocking) and no broker plugin is needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from queuewatch.config import mask_url, read_toml
from queuewatch.errors import ConfigError
from queuewatch.validation import coerce

DLQ_SUFFIX = ".dlq"
DELAY_PREFIX = "queuewatch.delay."
DELIVERY_EXCHANGE = "queuewatch.delivery"
DUE_PREFIX = "queuewatch.due."
#: The queues that carry delayed jobs and retries to their job queues (by dead-lettering).
SCHEDULING_PREFIXES = (DELAY_PREFIX, DUE_PREFIX)
DEFAULT_DELAY_LEVELS = 20  # up to 2**20 - 1 s, about 12 days (a "reminder in 7 days" fits)
MAX_DELAY_LEVELS = 28
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,200}$")
WEBHOOKS_QUEUE = "queuewatch.webhooks"
"""The internal job queue completion webhooks are delivered from (see queuewatch.jobs.webhooks):
the one queue allowed the reserved ``queuewatch.`` prefix, so a topology may tune it."""
#: Longest webhook URL accepted.
MAX_WEBHOOK_URL = 2048


def check_webhook_url(url: object, where: str = "webhook") -> str:
    """``url`` when it is an absolute http(s) URL with a host, else one clear ConfigError."""
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{where}: a webhook URL must be a non-empty string")
    shown = mask_url(url)
    if len(url) > MAX_WEBHOOK_URL or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise ConfigError(f"{where}: webhook URL {shown[:100]!r} is too long or contains "
                          "spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: webhook URL {shown!r} is invalid ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: webhook URL {shown!r} must be http:// or https:// with a host")
    if port == 0:
        raise ConfigError(f"{where}: webhook URL {shown!r} has port 0")
    return url

QueueType = Literal["classic", "quorum"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing job is retried: exponential backoff with jitter through the delay levels."""

    max_attempts: int = 5
    """Total runs including the first; 1 means no retry."""
    backoff_initial: float = 1.0
    """Delay before the first retry, seconds."""
    backoff_multiplier: float = 2.0
    backoff_max: float = 300.0
    jitter: float = 0.1
    """Fraction of the delay added at random (0.1 = up to +10%)."""

    def delay_for(self, attempt: int, rand: float = 0.0) -> int:
        """Whole seconds to wait before attempt ``attempt + 1`` (``rand`` in [0, 1))."""
        base = self.backoff_initial * (self.backoff_multiplier ** max(attempt - 1, 0))
        base = min(base, self.backoff_max)
        return max(round(base * (1.0 + self.jitter * rand)), 0)


@dataclass(frozen=True)
class QueueSpec:
    """A job queue as queuewatch declares it."""

    name: str
    max_priority: int | None = 10
    """``x-max-priority``; None or 0 for no priorities. RabbitMQ advises single digits."""
    max_length: int | None = None
    """``x-max-length`` (messages); publishes past it are nacked (back-pressure)."""
    max_length_bytes: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dlq: bool = True
    queue_type: QueueType = "classic"
    stuck_after: float | None = None
    """Seconds after which an in-flight job of this queue counts as stuck (default: settings)."""
    rate_limit: float | None = None
    """At most this many jobs per second for the whole queue, over every worker process and
    host (tokens on the broker, see :mod:`queuewatch.worker.limits`); changeable at run time
    with ``queuewatch queues limit``."""
    rate_limit_per_process: float | None = None
    """At most this many jobs per second per worker process (what ``rate_limit`` meant before)."""
    rate_limit_per_key: float | None = None
    """At most this many jobs per second per key (e.g. per customer), over every worker."""
    rate_limit_key: str | None = None
    """Where a job's key is for ``rate_limit_per_key``: ``payload:FIELD`` or ``header:NAME``."""
    timeout: float | None = None
    """Per-job time limit in seconds."""
    delivery_limit: int | None = None
    """Quorum queues only: ``x-delivery-limit``. A message delivered (and returned) more
    often than this — a poison message that crashes every worker before it can settle — is
    dead-lettered by the broker into ``Q.dlq`` instead of looping forever."""
    webhook: str | None = None
    """Completion webhook for every job of this queue (http(s) URL; a job's own
    ``x-qw-webhook`` header wins). Delivered by ``queuewatch webhooks``."""

    def __post_init__(self) -> None:
        if not QUEUE_NAME_RE.match(self.name):
            raise ConfigError(
                f"queue name {self.name!r} is invalid: use letters, digits, '_', '.', ':' or '-'"
            )
        if self.name.startswith(("amq.", "queuewatch.")) and self.name != WEBHOOKS_QUEUE:
            raise ConfigError(f"queue name {self.name!r} uses a reserved prefix")
        for attr in ("max_priority", "max_length", "max_length_bytes"):
            value = getattr(self, attr)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"queue {self.name!r}: {attr} must be a whole number")
            if value is not None and value < 0:
                raise ConfigError(f"queue {self.name!r}: {attr} must not be negative (got {value})")
        if self.max_priority is not None and self.max_priority > 255:
            raise ConfigError(f"queue {self.name!r}: max_priority must be <= 255 (10 or less advised)")
        if self.queue_type not in ("classic", "quorum"):
            raise ConfigError(f"queue {self.name!r}: queue_type must be 'classic' or 'quorum'")
        if self.queue_type == "quorum" and self.max_priority:
            raise ConfigError(
                f"queue {self.name!r}: quorum queues have no x-max-priority in RabbitMQ 3.10; "
                "set max_priority = 0 or use queue_type = 'classic'"
            )
        if self.delivery_limit is not None:
            if self.queue_type != "quorum":
                raise ConfigError(f"queue {self.name!r}: delivery_limit needs queue_type = 'quorum' "
                                  "(classic queues do not count deliveries)")
            if isinstance(self.delivery_limit, bool) or not isinstance(self.delivery_limit, int) \
                    or self.delivery_limit < 1:
                raise ConfigError(f"queue {self.name!r}: delivery_limit must be a whole number >= 1")
        r = self.retry
        if r.max_attempts < 1:
            raise ConfigError(f"queue {self.name!r}: retry.max_attempts must be >= 1")
        if r.backoff_initial < 0 or r.backoff_max < 0 or r.backoff_multiplier < 1 or r.jitter < 0:
            raise ConfigError(
                f"queue {self.name!r}: retry needs backoff_initial >= 0, backoff_max >= 0, "
                "backoff_multiplier >= 1 and jitter >= 0"
            )
        for attr in ("stuck_after", "rate_limit", "timeout", "rate_limit_per_process",
                     "rate_limit_per_key"):
            value = getattr(self, attr)
            if value is not None and value <= 0:
                raise ConfigError(f"queue {self.name!r}: {attr} must be > 0 (got {value})")
        kind, _, field_name = (self.rate_limit_key or "").partition(":")
        if (self.rate_limit_per_key is None) != (self.rate_limit_key is None) or (
                self.rate_limit_key is not None and (kind not in ("payload", "header")
                                                     or not field_name)):
            raise ConfigError(f"queue {self.name!r}: rate_limit_per_key needs rate_limit_key = "
                              "'payload:FIELD' or 'header:NAME' (and the other way round)")
        if self.webhook is not None:
            check_webhook_url(self.webhook, f"queue {self.name!r}")

    @property
    def dlq_name(self) -> str:
        return self.name + DLQ_SUFFIX

    def arguments(self) -> dict[str, Any]:
        """The ``x-*`` arguments the job queue is declared with."""
        args: dict[str, Any] = {}
        if self.queue_type == "quorum":
            args["x-queue-type"] = "quorum"
        if self.max_priority:
            args["x-max-priority"] = self.max_priority
        if self.max_length is not None:
            args["x-max-length"] = self.max_length
        if self.max_length_bytes is not None:
            args["x-max-length-bytes"] = self.max_length_bytes
        if self.max_length is not None or self.max_length_bytes is not None:
            args["x-overflow"] = "reject-publish"
        if self.dlq:
            args["x-dead-letter-exchange"] = ""
            args["x-dead-letter-routing-key"] = self.dlq_name
            if self.queue_type == "quorum":
                # The broker's own dead-lettering (delivery limit, rejects) keeps the message
                # until the DLQ confirmed it; that strategy requires reject-publish.
                args["x-dead-letter-strategy"] = "at-least-once"
                args["x-overflow"] = "reject-publish"
        if self.delivery_limit is not None:
            args["x-delivery-limit"] = self.delivery_limit
        return args

    def dlq_arguments(self) -> dict[str, Any]:
        """``Q.dlq`` is of the job queue's type: a quorum job queue keeps its dead letters
        replicated too."""
        return {"x-queue-type": "quorum"} if self.queue_type == "quorum" else {}

    @property
    def cap(self) -> str | None:
        """The queue's limits as a person would say them, or None."""
        parts = []
        if self.max_length is not None:
            parts.append(f"{self.max_length} messages")
        if self.max_length_bytes is not None:
            parts.append(f"{self.max_length_bytes} bytes")
        return " / ".join(parts) or None


def delay_queue_name(level: int) -> str:
    return f"{DELAY_PREFIX}{level}"


def delay_level_arguments(level: int) -> dict[str, Any]:
    """A delay level: quorum, fixed TTL, at-least-once dead-lettering onward."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": (2**level) * 1000,
        "x-overflow": "reject-publish",
        "x-dead-letter-strategy": "at-least-once",
        "x-dead-letter-exchange": DELIVERY_EXCHANGE if level == 0 else delay_queue_name(level - 1),
    }


def due_queue_name(queue: str) -> str:
    """The due queue of job queue ``queue`` (see the module docstring)."""
    return f"{DUE_PREFIX}{queue}"


def due_queue_arguments(queue: str) -> dict[str, Any]:
    """A due queue: quorum, every message expires at once into its job queue, at-least-once
    (a full job queue refuses it: it is retried, never dropped)."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": 0,
        "x-overflow": "reject-publish",
        "x-dead-letter-strategy": "at-least-once",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
    }


def without_delay_deaths(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``headers`` without the ``x-death`` entries of queuewatch's delay levels and due
    queues: what a message sent through the delay levels must carry.

    RabbitMQ drops a message dead-lettered into a queue its ``x-death`` already names with no
    rejection in between (cycle detection). A job retried twice passes its due queue twice, and
    one retried after 1 s then 3 s passes level 0 twice: with those entries kept, the second
    pass was silently dropped (a lost job). Other entries (the job's own history) stay."""
    out = dict(headers)
    deaths = out.get("x-death")
    if isinstance(deaths, list | tuple):
        kept = [d for d in deaths
                if not (isinstance(d, Mapping) and is_scheduling_queue(d.get("queue")))]
        if kept:
            out["x-death"] = kept
        else:
            out.pop("x-death")
    return out


def is_scheduling_queue(name: object) -> bool:
    """A delay level or a due queue (``name`` as str, or bytes from a header)."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return isinstance(name, str) and name.startswith(SCHEDULING_PREFIXES)


def delay_routing_key(delay_seconds: int, levels: int) -> str:
    """Routing key encoding ``delay_seconds`` in ``levels`` bits, most significant first."""
    if delay_seconds < 0:
        raise ValueError(f"delay must not be negative (got {delay_seconds})")
    if delay_seconds >= 2**levels:
        raise ValueError(
            f"delay {delay_seconds}s exceeds the longest the {levels} delay levels allow "
            f"({2**levels - 1}s); raise delay_levels in the topology"
        )
    return ".".join(str((delay_seconds >> bit) & 1) for bit in range(levels - 1, -1, -1))


def delay_entry_exchange(levels: int) -> str:
    """The exchange a delayed message is published to (the highest level)."""
    return delay_queue_name(levels - 1)


@dataclass(frozen=True)
class Topology:
    """Job queues plus the shared infrastructure one vhost needs."""

    queues: tuple[QueueSpec, ...] = ()
    delay_levels: int = DEFAULT_DELAY_LEVELS
    telemetry_exchange: str = "queuewatch.telemetry"
    control_exchange: str = "queuewatch.control"
    schedules: tuple[Mapping[str, Any], ...] = ()
    """The ``[[schedule]]`` tables as written (checked by :mod:`queuewatch.schedules`)."""

    def __post_init__(self) -> None:
        if not 1 <= self.delay_levels <= MAX_DELAY_LEVELS:
            raise ConfigError(f"delay_levels must be between 1 and {MAX_DELAY_LEVELS}")
        names = [q.name for q in self.queues]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"queue(s) declared twice in the topology: {', '.join(dupes)}")

    def queue(self, name: str) -> QueueSpec:
        for q in self.queues:
            if q.name == name:
                return q
        raise KeyError(name)

    @property
    def max_delay(self) -> int:
        return int(2**self.delay_levels) - 1


# -- loading from TOML -----------------------------------------------------------------

_QUEUE_KEYS = {
    "name", "max_priority", "max_length", "max_length_bytes", "retry", "dlq", "queue_type",
    "stuck_after", "rate_limit", "timeout", "delivery_limit", "webhook",
    "rate_limit_per_process", "rate_limit_per_key", "rate_limit_key",
}
_RETRY_KEYS = {"max_attempts", "backoff_initial", "backoff_multiplier", "backoff_max", "jitter"}
_TOP_KEYS = {"queue", "defaults", "delay_levels", "telemetry_exchange", "control_exchange",
             "schedule"}


def _check_keys(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
        )


def _retry_from(where: str, data: Any) -> RetryPolicy:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: retry must be a table")
    _check_keys(f"{where}.retry", data, _RETRY_KEYS)
    try:
        return RetryPolicy(**data)
    except TypeError as exc:
        raise ConfigError(f"{where}.retry: {exc}") from None


_QUEUE_FIELD_TYPES = {f.name: f.type for f in fields(QueueSpec)}
_TOPOLOGY_FIELD_TYPES = {f.name: f.type for f in fields(Topology)}


def topology_from_mapping(data: Mapping[str, Any], source: str = "topology") -> Topology:
    _check_keys(source, data, _TOP_KEYS)
    defaults = dict(data.get("defaults", {}))
    _check_keys(f"{source} [defaults]", defaults, _QUEUE_KEYS - {"name"})
    raw_queues = data.get("queue", [])
    if not isinstance(raw_queues, list) or not raw_queues:
        raise ConfigError(f"{source}: no queues; add at least one [[queue]] table with a name")
    specs = []
    for i, raw in enumerate(raw_queues):
        where = f"{source} queue #{i + 1}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a table")
        merged = {**defaults, **raw}
        _check_keys(where, merged, _QUEUE_KEYS)
        if "name" not in merged:
            raise ConfigError(f"{where}: missing 'name'")
        if "retry" in merged:
            merged["retry"] = _retry_from(where, merged["retry"])
        for key, value in merged.items():  # the type each field is annotated with, strictly
            if key != "retry":
                merged[key] = coerce(key, _QUEUE_FIELD_TYPES[key], value, where)
        for key in ("max_priority", "max_length", "max_length_bytes"):
            if isinstance(merged.get(key), float):
                raise ConfigError(f"{where}: {key} must be a whole number")
        try:
            specs.append(QueueSpec(**merged))
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    kwargs = {k: coerce(k, _TOPOLOGY_FIELD_TYPES[k], data[k], source)
              for k in ("delay_levels", "telemetry_exchange", "control_exchange") if k in data}
    raw_schedules = data.get("schedule", [])
    if not isinstance(raw_schedules, list) or not all(isinstance(r, Mapping) for r in raw_schedules):
        raise ConfigError(f"{source}: schedule must be [[schedule]] tables")
    return Topology(queues=tuple(specs), schedules=tuple(raw_schedules), **kwargs)


def load_topology(path: str | Path) -> Topology:
    p = Path(path)
    return topology_from_mapping(read_toml(p, "topology"), str(p))
