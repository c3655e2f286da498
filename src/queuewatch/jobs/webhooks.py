"""Completion webhooks: signed HTTP POSTs of a job's outcome, delivered as queuewatch jobs.

A job gets a webhook from its ``x-qw-webhook`` header (:data:`queuewatch.envelope.H_WEBHOOK`,
recorded in its accepted event) or from
its queue (``webhook = "https://..."`` in the topology). When it finishes (succeeded,
dead-lettered, cancelled) the :class:`~queuewatch.jobs.dispatcher.Dispatcher` publishes one
*webhook job* to the internal queue ``queuewatch.webhooks``; the delivery worker built by
:func:`delivery_worker` POSTs it. A non-2xx answer or an unreachable receiver raises, so the
delivery is retried with backoff, then dead-lettered to ``queuewatch.webhooks.dlq`` with the
reason — and can be replayed from there like any job. Job processing never waits for it.

Every POST is signed with the shared secret (setting ``webhook_secret``)::

    X-Queuewatch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of f"{t}.{body}">
    X-Queuewatch-Delivery: webhook-<job id>-<event id>   (the same for every retry)

A receiver checks both with :func:`verify` (or the same few lines in any language): the
HMAC proves the body came from queuewatch, the timestamp bounds replays, the delivery id
makes a retried delivery recognisable as one it has already handled.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, MutableSet
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from queuewatch.config import Settings
from queuewatch.errors import ConfigError, QueuewatchError
from queuewatch.events.model import Event
from queuewatch.jobs.state import JobStatus, webhook_receiver
from queuewatch.redact import redact
from queuewatch.topology import WEBHOOKS_QUEUE, QueueSpec, RetryPolicy, Topology, check_webhook_url
from queuewatch.worker import Job, NonRetryable, Worker

SIGNATURE_HEADER = "X-Queuewatch-Signature"
DELIVERY_HEADER = "X-Queuewatch-Delivery"
#: Seconds a signature's timestamp may differ from the receiver's clock (replay window).
DEFAULT_TOLERANCE = 300
#: Seconds one POST may take (connect + answer) before it counts as failed.
POST_TIMEOUT = 10.0
#: The internal queue's default shape: 8 attempts over about 2 minutes (1+2+...+64 s), then its DLQ.
WEBHOOKS_SPEC = QueueSpec(
    WEBHOOKS_QUEUE, max_priority=None,
    retry=RetryPolicy(max_attempts=8, backoff_initial=1, backoff_multiplier=2, backoff_max=120))
MAX_JOB_ID = 255


class WebhookRejected(QueuewatchError):
    """:func:`verify` refused a delivery (forged, stale, repeated or malformed)."""


class DeliveryFailed(QueuewatchError):
    """A receiver did not accept a delivery (non-2xx, unreachable, timeout): retried."""


# -- signing and verifying -------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Queuewatch-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, headers: Mapping[str, str], *,
           tolerance: float = DEFAULT_TOLERANCE, seen: MutableSet[str] | None = None,
           now: float | None = None) -> dict[str, Any]:
    """Check a delivery as a receiver; return its JSON body, or raise :class:`WebhookRejected`.

    ``body`` is the raw request body (bytes as received, before any JSON parsing);
    ``headers`` the request headers (any case). Refused: a missing or malformed signature,
    an HMAC that does not match (forged, or another secret), a timestamp more than
    ``tolerance`` seconds from now (a replay of an old delivery), and — when ``seen`` is
    given — a delivery id already in ``seen`` (a retry of one handled before; ids of
    accepted deliveries are added to it). Keep ``seen`` for longer than ``tolerance``."""
    lower = {k.lower(): v for k, v in headers.items()}
    raw = lower.get(SIGNATURE_HEADER.lower())
    if not raw:
        raise WebhookRejected(f"no {SIGNATURE_HEADER} header")
    parts: dict[str, list[str]] = {}
    for item in raw.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise WebhookRejected(f"malformed {SIGNATURE_HEADER}: no t=<unix seconds>") from None
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise WebhookRejected("signature does not match (forged, altered, or another secret)")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        raise WebhookRejected(f"timestamp is {age:.0f}s from now (tolerance {tolerance:g}s): "
                              "a replayed or delayed delivery")
    delivery = lower.get(DELIVERY_HEADER.lower(), "")
    if seen is not None:
        if not delivery:
            raise WebhookRejected(f"no {DELIVERY_HEADER} header")
        if delivery in seen:
            raise WebhookRejected(f"delivery {delivery} was already handled")
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRejected("body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected("body is not a JSON object")
    if seen is not None:
        seen.add(delivery)
    return payload


# -- what a webhook job carries --------------------------------------------------------
def webhook_job_id(job_id: str, event_id: str) -> str:
    """Deterministic: the same terminal event always makes the same webhook job (so a
    dispatcher that publishes it twice after a crash is deduplicated by the worker)."""
    jid = f"webhook-{job_id}-{event_id}"
    if len(jid.encode()) > MAX_JOB_ID:
        jid = f"webhook-{hashlib.sha256(job_id.encode()).hexdigest()[:40]}-{event_id}"
    return jid


def outcome_body(status: JobStatus, event: Event) -> dict[str, Any]:
    """What the receiver gets: the job's outcome as of its terminal ``event``."""
    body: dict[str, Any] = {
        "job_id": status.job_id, "queue": event.queue or status.queue,
        "state": status.state.value, "attempts": status.attempt or event.attempt,
        "at": event.at_ms, "event": event.kind,
    }
    if status.has_result and not status.result_expired:
        body["result"] = status.result
    if status.error_type or status.error or status.reason:
        body["error"] = {"type": status.error_type, "message": status.error,
                         "reason": status.reason}
    return body


def webhook_for(status: JobStatus, topology: Topology | None) -> str | None:
    """The job's own webhook, else its queue's, else None."""
    own = status.data.get("webhook")
    if isinstance(own, str) and own:
        return own
    if topology is not None and status.queue:
        try:
            return topology.queue(status.queue).webhook
        except KeyError:
            return None
    return None


# -- delivering ------------------------------------------------------------------------
def receiver(url: str) -> str:
    """``scheme://host:port`` of a webhook URL: what errors and logs show (a webhook's path or
    query often holds a token of its own, e.g. Slack's)."""
    return webhook_receiver(url)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer, not a place to re-POST the outcome to


class _Deadline:
    """The connections of one POST, cut (``shutdown``) once ``timeout`` has passed.

    A socket timeout bounds each read, not the answer: a receiver sending a byte every few
    seconds held a delivery (and its slot) for minutes with ``timeout=2``. From the deadline
    on, every socket of the POST is shut down (again every 50 ms, for one made meanwhile),
    which ends any blocked read or write in the POSTing thread."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = False
        self._done = threading.Event()
        self._conns: list[http.client.HTTPConnection] = []
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._watch, name="webhook-deadline", daemon=True)

    def __enter__(self) -> _Deadline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def connection_class(self, cls: Any) -> Any:
        def make(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            conn: http.client.HTTPConnection = cls(*args, **kwargs)
            self._conns.append(conn)
            connect = conn.connect

            def connect_and_keep() -> None:
                connect()
                # (urllib drops conn.sock once the answer's head is in: the body is read
                # through the socket kept here)
                self._socks.append(conn.sock)

            conn.connect = connect_and_keep  # type: ignore[method-assign]
            return conn
        return make

    def _watch(self) -> None:
        if self._done.wait(self.timeout):
            return
        self.expired = True
        while True:
            socks = [conn.sock for conn in list(self._conns)] + list(self._socks)
            for sock in socks:
                if sock is not None:
                    try:  # (the plain socket's shutdown: also under TLS, whatever it is doing;
                        # a socket closed since has no descriptor left: EBADF, nothing else hit)
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
                    except OSError:
                        pass
            if self._done.wait(0.05):
                return


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    class Http(urllib.request.HTTPHandler):
        def do_open(self, http_class: Any, req: Any, **kw: Any) -> Any:
            return super().do_open(deadline.connection_class(http_class), req, **kw)

    class Https(urllib.request.HTTPSHandler):
        def do_open(self, http_class: Any, req: Any, **kw: Any) -> Any:
            return super().do_open(deadline.connection_class(http_class), req, **kw)

    return urllib.request.build_opener(_NoRedirect, Http, Https)


def _without_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without ``user:password@`` and the ``Authorization: Basic`` header it asks for
    (urllib takes ``user:password@host`` for the host name)."""
    parts = urlsplit(url)
    if parts.username is None and "@" not in parts.netloc:
        return url, {}
    host = parts.netloc.rpartition("@")[2]
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), {"Authorization": f"Basic {token}"}


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float = POST_TIMEOUT) -> int:
    """POST ``body`` (blocking); the HTTP status, or DeliveryFailed when there was none within
    ``timeout`` s (the whole answer's bound, not each read's). Credentials in the URL
    (``https://user:password@host/...``) are sent as basic auth, and shown nowhere."""
    target, auth = _without_userinfo(url)
    request = urllib.request.Request(target, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "queuewatch-webhooks", **auth,
        **headers})
    with _Deadline(timeout) as deadline:
        try:
            with _opener(deadline).open(request, timeout=timeout) as response:
                status = int(response.status)
                try:  # (the answer is in: a body cut at the deadline does not undo it)
                    response.read(65536)
                except (OSError, http.client.HTTPException):
                    pass
                return status
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            if deadline.expired:
                raise DeliveryFailed(f"{receiver(url)} did not answer within {timeout:g}s") from None
            reason = getattr(exc, "reason", exc)
            raise DeliveryFailed(f"{receiver(url)} unreachable: "
                                 f"{redact(str(reason)) or type(exc).__name__}") from None


def make_handler(secret: str, timeout: float = POST_TIMEOUT) -> Any:
    """The delivery worker's handler: sign, POST, raise unless the receiver took it."""
    async def deliver(job: Job) -> dict[str, Any]:
        payload = job.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("body"), dict):
            raise NonRetryable("not a webhook job: the payload needs 'url' and 'body'")
        try:
            url = check_webhook_url(payload.get("url"), f"webhook job {job.job_id}")
        except ConfigError as exc:
            raise NonRetryable(str(exc)) from None
        body = json.dumps(payload["body"], separators=(",", ":"), default=str).encode()
        headers = {SIGNATURE_HEADER: sign(secret, int(time.time()), body),
                   DELIVERY_HEADER: job.job_id}
        status = await asyncio.to_thread(post, url, body, headers, timeout)
        if not 200 <= status < 300:
            raise DeliveryFailed(f"{receiver(url)} answered HTTP {status}")
        return {"status": status}
    return deliver


def webhooks_topology(topology: Topology | None) -> Topology:
    """``topology`` plus the internal webhooks queue (as the topology declares it, if it
    does, else :data:`WEBHOOKS_SPEC`)."""
    base = topology or Topology()
    if any(q.name == WEBHOOKS_QUEUE for q in base.queues):
        return base
    return Topology(queues=(*base.queues, WEBHOOKS_SPEC), delay_levels=base.delay_levels,
                    telemetry_exchange=base.telemetry_exchange,
                    control_exchange=base.control_exchange)


def delivery_worker(settings: Settings, topology: Topology | None, *, concurrency: int = 10,
                    timeout: float = POST_TIMEOUT, **worker_options: Any) -> Worker:
    """A :class:`~queuewatch.worker.Worker` delivering the webhook jobs of ``topology``'s
    vhost (its retries, DLQ, idempotency store, heartbeats: those of any worker)."""
    if not settings.webhook_secret:
        raise ConfigError("webhook_secret is not set (QUEUEWATCH_WEBHOOK_SECRET): webhooks "
                          "are signed with it, and a receiver verifies them with it")
    worker = Worker(settings, webhooks_topology(topology), concurrency=concurrency,
                    **worker_options)
    worker.add_handler(WEBHOOKS_QUEUE, make_handler(settings.webhook_secret, timeout))
    return worker
