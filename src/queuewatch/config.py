"""One typed settings object: defaults -> TOML file -> ``QUEUEWATCH_*`` environment.

Every field can be set in ``queuewatch.toml`` (top-level keys, plus a
``[thresholds]`` table) or through ``QUEUEWATCH_<FIELD>`` (threshold fields
too: ``QUEUEWATCH_STUCK_JOB_SECONDS``). Unknown keys are errors, not ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from queuewatch import redact
from queuewatch.errors import ConfigError
from queuewatch.validation import check_range, coerce

DEFAULT_CONFIG_FILE = "queuewatch.toml"
ENV_PREFIX = "QUEUEWATCH_"
#: The source named in an error about a value given as a command-line flag.
FLAG_SOURCE = "command line"
#: RabbitMQ refreshes its statistics every 5 s by default; polling faster shows nothing new.
BROKER_STATS_INTERVAL = 5.0


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "queuewatch"


@dataclass(frozen=True)
class Thresholds:
    """Alert and detection thresholds (seconds unless said otherwise)."""

    stuck_job_seconds: float = 300.0
    """An in-flight job older than this is reported stuck (per-queue override in the topology)."""
    heartbeat_stale_seconds: float = 10.0
    """A worker whose last heartbeat is older than this is considered gone or hung."""
    oldest_age_warning: float = 60.0
    """Consumer lag: warn when the oldest ready message is older than this."""
    oldest_age_critical: float = 300.0
    fill_warning: float = 0.8
    """Fraction of ``x-max-length`` at which a queue is reported near its cap."""
    fill_critical: float = 0.95
    dlq_growth_warning: float = 0.0
    """Alert when a DLQ grew by more than this many messages since the previous poll."""
    stalled_polls: int = 3
    """Messages and consumers but no acks for this many polls: the queue is stalled."""


@dataclass(frozen=True)
class Settings:
    """Everything queuewatch needs to know to reach and judge a broker."""

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """AMQP URL; its path (if any) is the default vhost. With ``amqp_urls`` set, the first
    of them."""
    amqp_urls: tuple[str, ...] = ()
    """Broker addresses in order of preference (a cluster's nodes); clients fail over along
    the list. Empty: just ``amqp_url``. Comma-separated in the environment."""
    management_url: str = "http://127.0.0.1:15672"
    """Base URL of the RabbitMQ management API. With ``management_urls`` set, the first."""
    management_urls: tuple[str, ...] = ()
    """Management API addresses in order of preference (failover as for ``amqp_urls``)."""
    heartbeat: int = 10
    """AMQP heartbeat interval in seconds (RabbitMQ's default is 60): a link that stays
    silent for three missed heartbeats, ``(heartbeat + 1) * 3`` s (33 s at 10), is declared
    dead and reconnected. The monitor's own heartbeat feed notices a silent link sooner (3 s)
    with probes; 0 turns AMQP heartbeats off."""
    reconnect_max_delay: float = 5.0
    """Longest pause between reconnect attempts (exponential backoff with full jitter)."""
    broker_consumer_timeout: float = 1800.0
    """Seconds: the broker's ``consumer_timeout`` (RabbitMQ's default is 30 minutes). The
    broker cannot be asked for it (3.10 exposes it nowhere), so set it to the value in
    rabbitmq.conf: a worker warns at start when a queue's job time limit exceeds it."""
    management_username: str | None = None
    """Defaults to the AMQP URL's user."""
    management_password: str | None = None
    """Defaults to the AMQP URL's password."""
    vhost: str | None = None
    """Virtual host; defaults to the AMQP URL's path, else ``/``."""
    poll_interval: float = BROKER_STATS_INTERVAL
    """Seconds between monitor polls; polls never overlap."""
    history_size: int = 120
    """Snapshots kept per queue for sparklines."""
    http_timeout: float = 10.0
    read_only: bool = False
    """Refuse every destructive action (replay, delete, purge, import, cancel, terminate)."""
    state_dir: Path = field(default_factory=_state_dir)
    """Where the audit log and the default idempotency store live."""
    audit_log: Path | None = None
    """Defaults to ``<state_dir>/audit.jsonl``."""
    web_config: Path | None = None
    """A Prometheus web-config YAML file (``tls_server_config``, ``basic_auth_users``) for the
    exporter's and the worker's metrics endpoints (see :mod:`queuewatch.webconfig`)."""
    tls_ca_file: Path | None = None
    """CA certificate(s) that sign the broker's certificate (amqps and an https management
    API); the server is always verified. Default: the system's CAs."""
    tls_cert_file: Path | None = None
    """Client certificate for a broker that asks for one (PEM; may hold the key too)."""
    tls_key_file: Path | None = None
    """The client certificate's private key (PEM)."""
    telemetry_exchange: str = "queuewatch.telemetry"
    control_exchange: str = "queuewatch.control"
    export_include: tuple[str, ...] = ()
    """Exporter: only queues matching one of these glob patterns (``orders.*``; a pattern
    with ``/`` matches ``vhost/name``). Empty: every queue."""
    export_exclude: tuple[str, ...] = ()
    """Exporter: leave out queues matching any of these glob patterns (after include)."""
    export_max_queues: int = 0
    """Exporter: at most this many queues (first by vhost and name, so the series stay the
    same from scrape to scrape); the rest are counted in
    ``queuewatch_queues_not_exported{reason="cap"}``. 0: no cap."""
    export_lean: bool = False
    """Exporter: leave queue depth and consumer counts to RabbitMQ's own ``rabbitmq_prometheus``
    (``rabbitmq_queue_messages_ready``, ``..._unacked``, ``rabbitmq_queue_consumers``) and
    export only what it lacks (lag, ETAs, fill, DLQ links, stalled/orphaned, stuck jobs,
    workers); see docs/monitoring.md for the PromQL joins."""
    worker_name: str | None = None
    """A stable worker id (``queuewatch worker --name``) instead of host-pid-random, so the
    exporter's ``worker`` label survives restarts; with ``--processes N`` each child is
    ``NAME-1`` .. ``NAME-N``."""
    job_events: bool = True
    """Record every job transition (accepted, started, failed, succeeded, ...) in the job
    events stream: status by id, timelines, results, webhooks and the live event stream
    read it. Off: none of those answer."""
    events_stream: str = "queuewatch.events"
    """The RabbitMQ stream holding job events (one per vhost)."""
    events_max_age: float = 604800.0
    """Seconds of job events kept (the stream's ``x-max-age`` and the index's retention);
    a job whose last event is older answers ``unknown``."""
    events_max_bytes: int = 2_000_000_000
    """Most bytes the job events stream keeps (``x-max-length-bytes``)."""
    events_hold: float = 10.0
    """Longest a worker's ack (and a producer's ``publish``) waits for its job event to be
    confirmed by the events stream. Past it the job goes on and the event stays queued in
    memory, sent when the stream answers again (a warning says so, and how many wait): a
    stream that cannot take writes (its coordinator without a majority) must not stop the
    jobs. An event still queued when the process ends is lost."""
    result_max_bytes: int = 65536
    """Largest JSON result a handler may return; a larger one fails the job (non-retryable)."""
    result_ttl: float = 86400.0
    """Seconds a job's result stays fetchable after it succeeded."""
    webhook_secret: str | None = field(default=None, repr=False)
    """Shared secret signing completion webhooks (HMAC-SHA256; ``QUEUEWATCH_WEBHOOK_SECRET``).
    Never logged; ``queuewatch webhooks`` refuses to start without it."""
    outbox: bool = False
    """Producers: while the broker is unreachable or blocks publishing, write jobs to a local
    durable spool and return at once; sent when it is back (see docs/jobs.md)."""
    outbox_dir: Path | None = None
    """Where the outbox spools live (default ``<state_dir>/outbox``); setting it turns the
    outbox on."""
    outbox_max_jobs: int = 100_000
    """Most jobs an outbox holds; at the cap a publish raises BackPressure (or waits)."""
    outbox_fsync: bool = True
    """fsync every spool commit (survives a power loss); false: survives a crash of the
    process only, many times faster for one-at-a-time publishes."""
    thresholds: Thresholds = field(default_factory=Thresholds)

    # -- derived values ----------------------------------------------------------------
    @property
    def amqp_addresses(self) -> tuple[str, ...]:
        """Every AMQP URL to try, in order."""
        return self.amqp_urls or (self.amqp_url,)

    @property
    def management_addresses(self) -> tuple[str, ...]:
        """Every management API base URL to try, in order."""
        return self.management_urls or (self.management_url,)

    @property
    def effective_vhost(self) -> str:
        if self.vhost is not None:
            return self.vhost
        path = urlsplit(self.amqp_url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    @property
    def credentials(self) -> tuple[str, str]:
        """Management API (user, password)."""
        parts = urlsplit(self.amqp_url)
        user = self.management_username or unquote(parts.username or "guest")
        password = self.management_password
        if password is None:
            password = unquote(parts.password or "guest")
        return user, password

    @property
    def audit_log_path(self) -> Path:
        return self.audit_log or self.state_dir / "audit.jsonl"

    def amqp_url_for(self, vhost: str | None = None, address: str | None = None) -> str:
        """The AMQP URL (``address``, default the first) with its path set to ``vhost``
        (default: the effective vhost)."""
        parts = urlsplit(self.amqp_url if address is None else address)
        vh = self.effective_vhost if vhost is None else vhost
        return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vh, safe=""), parts.query, ""))

    def with_vhost(self, vhost: str) -> Settings:
        return replace(self, vhost=vhost)

    def describe(self) -> dict[str, Any]:
        """Settings as plain values with every password masked (for ``config show``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "thresholds":
                value = dataclasses.asdict(value)
            elif f.name in ("management_password", "webhook_secret"):
                value = None if value is None else "***"
            elif f.name.endswith("_url"):
                value = mask_url(value)
            elif f.name.endswith("_urls"):
                value = [mask_url(v) for v in value]
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


def mask_url(url: str) -> str:
    """Replace the password in ``url`` with ``***`` (``amqp://u:***@host/``).

    Works on text, not on a parse, so that a URL too broken to parse (a password with an
    unencoded ``/`` or ``#``) is masked too: everything between ``user:`` and the last ``@``
    goes."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@")
    if at < 0:
        return url
    user, colon, _password = rest[:at].partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:***@{rest[at + 1:]}"


_SCHEMES = {"amqp": ("amqp", "amqps"), "management": ("http", "https")}


def check_url(name: str, url: str, source: str | None = None) -> None:
    """Raise one clear :class:`ConfigError` (password masked) unless ``url`` is a usable
    AMQP (``name`` starts with ``amqp``) or management API URL; ``source`` (a file, a
    variable) starts the message."""
    allowed = _SCHEMES["amqp" if name.startswith("amqp") else "management"]
    shown = f"{source + ': ' if source else ''}{name} = {mask_url(url)!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        why = "has an invalid port" if "port" in str(exc).lower() else "is not a valid URL"
        hint = " (a password with '/', '#', '?' or '@' must be percent-encoded)" if "@" in url else ""
        raise ConfigError(f"{shown} {why}{hint}") from None
    if parts.scheme not in allowed:
        raise ConfigError(f"{shown} must start with {' or '.join(f'{a}://' for a in allowed)}")
    if not parts.hostname:
        raise ConfigError(f"{shown} names no host")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{shown} has an invalid port")


# -- loading ----------------------------------------------------------------------------

_SETTINGS_FIELDS = {f.name: f for f in fields(Settings)}
_THRESHOLD_FIELDS = {f.name: f for f in fields(Thresholds)}


def _validate(s: Settings, origins: Mapping[str, str] | None = None) -> Settings:
    """Every value in range (whatever its source: ``origins`` maps a setting to the file,
    variable or flag it came from; the rest are defaults), every URL usable."""
    origins = origins or {}
    for f in fields(s):
        check_range(f.name, getattr(s, f.name), origins.get(f.name, "default"))
    for f in fields(s.thresholds):
        check_range(f.name, getattr(s.thresholds, f.name), origins.get(f.name, "default"),
                    f"thresholds.{f.name}")
    if s.export_max_queues < 0:
        raise ConfigError(f"export_max_queues must be >= 0 (got {s.export_max_queues}; 0: no cap)")
    if s.heartbeat < 0:
        raise ConfigError(f"heartbeat must be >= 0 seconds (got {s.heartbeat}; 0 turns it off)")
    if not s.reconnect_max_delay > 0:
        raise ConfigError(f"reconnect_max_delay must be > 0 seconds (got {s.reconnect_max_delay})")
    for name in ("amqp_url", "management_url"):
        check_url(name, getattr(s, name), origins.get(name))
    for name in ("amqp_urls", "management_urls"):
        for i, url in enumerate(getattr(s, name)):
            check_url(f"{name}[{i}]", url, origins.get(name))
    # The first address of a list is the one shown, and the one the vhost and the
    # credentials come from.
    if s.amqp_urls and s.amqp_url != s.amqp_urls[0]:
        s = replace(s, amqp_url=s.amqp_urls[0])
    if s.management_urls and s.management_url != s.management_urls[0]:
        s = replace(s, management_url=s.management_urls[0])
    return s


def settings_from_mapping(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check and coerce a TOML mapping into ``Settings`` keyword arguments."""
    kwargs: dict[str, Any] = {}
    for key, raw in data.items():
        if key == "thresholds":
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{source}: [thresholds] must be a table")
            th: dict[str, Any] = {}
            for tkey, tval in raw.items():
                if tkey not in _THRESHOLD_FIELDS:
                    known = ", ".join(sorted(_THRESHOLD_FIELDS))
                    raise ConfigError(f"{source}: unknown key thresholds.{tkey} (known: {known})")
                th[tkey] = coerce(tkey, _THRESHOLD_FIELDS[tkey].type, tval, source)
            kwargs["thresholds"] = th
            continue
        if key not in _SETTINGS_FIELDS:
            known = ", ".join(sorted(_SETTINGS_FIELDS))
            raise ConfigError(f"{source}: unknown key {key!r} (known: {known})")
        kwargs[key] = coerce(key, _SETTINGS_FIELDS[key].type, raw, source)
    return kwargs


def read_toml(path: Path, what: str = "config") -> dict[str, Any]:
    """Read a TOML file, turning every failure into one clear :class:`ConfigError`."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} file {str(path)!r} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{what} file {str(path)!r} is not readable (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} file {str(path)!r} is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} file {str(path)!r} is not UTF-8 text") from None


def _merge_source(merged: dict[str, Any], source: Mapping[str, Any]) -> None:
    """Apply one source over the earlier ones. A source that names a single address
    (``amqp_url``) without a list replaces an earlier list too: the later source wins."""
    for single in ("amqp_url", "management_url"):
        if single in source and single + "s" not in source:
            merged.pop(single + "s", None)
    merged.update(source)


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings: defaults, then ``path`` (or ``./queuewatch.toml`` if present), then env.

    ``overrides`` (e.g. from CLI flags) win over everything; ``None`` values are ignored.
    """
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    thresholds: dict[str, Any] = {}
    origins: dict[str, str] = {}
    """Setting -> the file, variable or flag its value came from (for error messages)."""

    cfg_path = Path(path) if path is not None else None
    if cfg_path is None and env.get(ENV_PREFIX + "CONFIG"):
        cfg_path = Path(env[ENV_PREFIX + "CONFIG"])
    if cfg_path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        cfg_path = Path(DEFAULT_CONFIG_FILE)
    if cfg_path is not None:
        file_kwargs = settings_from_mapping(read_toml(cfg_path), str(cfg_path))
        thresholds.update(file_kwargs.pop("thresholds", {}))
        merged.update(file_kwargs)
        origins.update(dict.fromkeys([*file_kwargs, *thresholds], str(cfg_path)))

    from_env: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name in _THRESHOLD_FIELDS:
            thresholds[name] = coerce(name, _THRESHOLD_FIELDS[name].type, value, key)
        elif name in _SETTINGS_FIELDS and name != "thresholds":
            from_env[name] = coerce(name, _SETTINGS_FIELDS[name].type, value, key)
        else:  # see unknown_environment(): the CLI warns about these
            continue
        origins[name] = key
    _merge_source(merged, from_env)

    from_flags: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in _THRESHOLD_FIELDS:
            thresholds[key] = coerce(key, _THRESHOLD_FIELDS[key].type, value, FLAG_SOURCE)
        elif key in _SETTINGS_FIELDS:
            from_flags[key] = coerce(key, _SETTINGS_FIELDS[key].type, value, FLAG_SOURCE)
        else:
            raise TypeError(f"unknown setting {key!r}")
        origins[key] = FLAG_SOURCE
    _merge_source(merged, from_flags)

    settings = _validate(Settings(**merged, thresholds=Thresholds(**thresholds)), origins)
    register_secrets(settings)
    return settings


def register_secrets(settings: Settings) -> None:
    """Tell :mod:`queuewatch.redact` every secret these settings hold, so no output shows it."""
    for url in (*settings.amqp_addresses, *settings.management_addresses):
        redact.register_url(url)
    redact.register([settings.management_password, getattr(settings, "webhook_secret", None)],
                    not_if=[settings.credentials[0]])


#: ``QUEUEWATCH_*`` variables that are not settings but are read by queuewatch's own tools.
OTHER_VARIABLES = frozenset({"CONFIG", "SKIP_LINT"})
OTHER_PREFIXES = ("TEST_", "BENCH_")


def unknown_environment(env: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``QUEUEWATCH_*`` variable that names no setting (a typo is otherwise
    ignored without a word), with the closest known name when there is one."""
    env = os.environ if env is None else env
    known = [ENV_PREFIX + n.upper() for n in (*_SETTINGS_FIELDS, *_THRESHOLD_FIELDS) if n != "thresholds"]
    known += [ENV_PREFIX + n for n in OTHER_VARIABLES]
    out = []
    for key in sorted(env):
        rest = key[len(ENV_PREFIX):]
        if not key.startswith(ENV_PREFIX) or key in known or rest.startswith(OTHER_PREFIXES):
            continue
        # Compared without the common prefix, which would make every name look close.
        close = difflib.get_close_matches(rest, [k[len(ENV_PREFIX):] for k in known], n=1, cutoff=0.75)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        out.append(f"{key} is not a queuewatch setting and is ignored{hint}")
    return out
