"""``queuewatch serve``: the job status API over HTTP, and the live event stream.

    GET /jobs/{id}                   status and timeline (404 {"state": "unknown"}; 400 bad id)
    GET /jobs/{id}/result?timeout=S  waits up to S s: 200 result, 409 failed (with its error),
                                     404 unknown, 410 result expired, 504 still running (S
                                     bounds the whole request, the read of the stream too)
    GET /events?job=ID | ?queue=Q    Server-Sent Events (see :mod:`.sse`), Last-Event-ID
    GET /healthz                     200 while the process serves: {"status": "ok"}, or
                                     {"status": "starting" | "reconnecting", "broker": ...,
                                     "reason": ...} (no authentication)
    GET /readyz                      the same body; 200 only when "ok", else 503
    HEAD of each                     the GET's status and headers, no body (405 for the rest)

Started with a :class:`~queuewatch.jobs.startup.Startup` (``queuewatch serve``), it answers
before the broker does: until the job events are read up to now, the job routes answer 503
with the reason and ``Retry-After`` (a request waits for a start under way that has not
failed yet, at most the stream read's bound). ``/healthz`` answers 200 as long as the
process serves, as the exporter answers every scrape while the broker is away (with
``queuewatch_up 0``): its ``status`` says whether it can answer; ``/readyz`` says the same
in its status code, for a load balancer or a readiness probe that reads only that.

A job id with ``/`` or other reserved characters is percent-encoded in the path. With a web
config (the exporter's: TLS and basic-auth users), every route but ``/healthz`` needs a
user: 401 with ``WWW-Authenticate`` otherwise. Answers are JSON; bad input is a 4xx with an
``error`` line, never a traceback.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from typing import Any, Protocol

from queuewatch.errors import ConfigError
from queuewatch.jobs.api import (
    EventsUnavailable,
    JobFailed,
    Jobs,
    JobUnknown,
    ResultExpired,
    ResultTimeout,
    check_job_id,
)
from queuewatch.jobs.httpd import HttpError, HttpServer, Request, head_bytes, send_json
from queuewatch.jobs.reorder import Position
from queuewatch.jobs.sse import EVENT_STREAM_HEADERS, KEEPALIVE, EventHub, parse_id
from queuewatch.jobs.startup import Startup
from queuewatch.redact import redact

#: Longest ``?timeout=`` a result request may wait (seconds).
MAX_RESULT_WAIT = 300.0
#: ``?timeout=`` when none is given.
DEFAULT_RESULT_WAIT = 30.0
#: Longest queue name accepted in ``/events?queue=``.
MAX_QUEUE_NAME = 255
#: ``Retry-After`` of a 503 (seconds; the link's reconnect pause is capped at 5 s by default).
RETRY_AFTER = "5"


class WebAuth(Protocol):
    """What the server needs of :class:`queuewatch.webconfig.WebConfig`."""

    @property
    def scheme(self) -> str: ...

    def ssl_context(self) -> ssl.SSLContext | None: ...

    def authorized(self, authorization_header: str | None) -> bool: ...


class JobsWeb:
    """The HTTP face of a :class:`Jobs` (started and closed by its owner)."""

    def __init__(self, jobs: Jobs, *, web: WebAuth | None = None,
                 keepalive: float = KEEPALIVE, startup: Startup | None = None) -> None:
        self.jobs = jobs
        self.web = web
        self.startup = startup
        """The background start of ``jobs`` (None: ``jobs`` was started before)."""
        self.keepalive = keepalive
        self.hub = EventHub(jobs)
        self.server = HttpServer(self.handle, ssl_context=web.ssl_context() if web else None)
        self.port: int | None = None

    @property
    def scheme(self) -> str:
        return self.web.scheme if self.web is not None else "http"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.port = await self.server.start(host, port)
        return self.port

    async def close(self) -> None:
        self.hub.close()
        await self.server.close()

    # -- routing -----------------------------------------------------------------------
    async def handle(self, request: Request, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, f"{request.method[:20]} is not supported: GET (or HEAD) only",
                            {"Allow": "GET, HEAD"})
        head = request.method == "HEAD"  # (the GET's status and headers, no body)
        try:
            segments = request.segments
        except UnicodeDecodeError:
            raise HttpError(400, "the path is not valid UTF-8 after percent-decoding") from None
        if segments in (["healthz"], ["readyz"]):
            body = self.health()
            if segments == ["healthz"] or body["status"] == "ok":
                await send_json(writer, 200, body, head_only=head)
                return
            raise HttpError(503, body, {"Retry-After": RETRY_AFTER})
        # In a thread: a bcrypt check takes ~0.2 s, and must not stall the live streams.
        if self.web is not None and not await asyncio.to_thread(
                self.web.authorized, request.headers.get("authorization")):
            raise HttpError(401, "authentication required",
                            {"WWW-Authenticate": 'Basic realm="queuewatch", charset="UTF-8"'})
        if len(segments) == 2 and segments[0] == "jobs":
            await send_json(writer, *await self.job_status(segments[1]), head_only=head)
        elif len(segments) == 3 and segments[0] == "jobs" and segments[2] == "result":
            await send_json(writer, *await self.job_result(segments[1], request.param("timeout")),
                            head_only=head)
        elif segments == ["events"]:
            job_id, queue, last_event_id = self._events_args(request)
            try:
                await self._started(self.jobs.sync_timeout)
            except EventsUnavailable as exc:
                raise _unavailable(exc) from None
            after = self.hub.resume_after(last_event_id) if last_event_id else None
            if head:
                writer.write(head_bytes(200, EVENT_STREAM_HEADERS))
                await writer.drain()
                return
            await self.hub.stream(reader, writer, job_id=job_id, queue=queue, after=after,
                                  keepalive=self.keepalive)
        else:
            raise HttpError(404, "no such route: GET /jobs/{id}, /jobs/{id}/result, "
                                 "/events, /healthz, /readyz")

    def health(self) -> dict[str, Any]:
        """``/healthz``'s body: ``{"status": "ok"}``, else the status (``starting`` until the
        job events are first read up to now, ``reconnecting`` while the link is down after
        that), the broker link and the reason — the reason left out when the job routes need
        a user, as this route does not (it names the broker's address)."""
        link = self.jobs.link
        state = self.startup.state if self.startup is not None else (
            "ok" if link.alive else "reconnecting")
        if state == "ok":
            return {"status": "ok"}  # (as before there were other states)
        body: dict[str, Any] = {"status": state,
                                "broker": "connected" if link.alive else "not connected"}
        if state == "starting" and self.startup is not None:
            body["waiting_seconds"] = round(self.startup.waited, 1)
            reason = self.startup.reason()
        else:
            lost = f" (for {time.time() - link.lost_at:.0f} s)" if link.lost_at else ""
            reason = f"the link to the broker is down{lost}: {link.last_error or 'reconnecting'}"
        if self.web is None or self.web.authorized(None):
            body["reason"] = redact(reason)
        return body

    async def _started(self, timeout: float) -> None:
        """Return once the job events are read up to now (see :class:`Startup`)."""
        if self.startup is not None:
            await self.startup.wait(timeout)

    # -- routes ------------------------------------------------------------------------
    async def job_status(self, raw_id: str) -> tuple[int, dict[str, Any]]:
        job_id = _job_id(raw_id)
        try:
            await self._started(self.jobs.sync_timeout)
            status = await self.jobs.status(job_id)
        except (EventsUnavailable, TimeoutError) as exc:
            raise _unavailable(exc) from None
        return (200 if status.known else 404), status.to_json()

    async def job_result(self, raw_id: str, raw_timeout: str | None) -> tuple[int, dict[str, Any]]:
        job_id = _job_id(raw_id)
        timeout = DEFAULT_RESULT_WAIT
        if raw_timeout is not None:
            try:
                timeout = float(raw_timeout)
            except ValueError:
                timeout = -1.0
            if not (math.isfinite(timeout) and 0 <= timeout <= MAX_RESULT_WAIT):
                raise HttpError(400, f"timeout must be a number of seconds from 0 to "
                                     f"{MAX_RESULT_WAIT:g} (got {raw_timeout[:30]!r})")
        try:
            if self.startup is not None and not self.startup.ready.is_set():
                began = time.monotonic()  # (S bounds the whole request: the start's wait too)
                await self.startup.wait(min(timeout, self.jobs.sync_timeout))
                timeout = max(timeout - (time.monotonic() - began), 0.0)
            value = await self.jobs.result(job_id, timeout)
        except JobUnknown:
            return 404, {"job_id": job_id, "state": "unknown"}
        except JobFailed as exc:
            s = exc.status
            return 409, {"job_id": job_id, "state": s.state.value, "attempt": s.attempt,
                         "error_type": s.error_type, "error": s.error, "reason": s.reason,
                         "message": str(exc)}
        except ResultExpired as exc:
            return 410, {"job_id": job_id, "state": "succeeded", "error": str(exc)}
        except ResultTimeout as exc:
            status = exc.status or await self.jobs.status(job_id, fresh=False)
            return 504, {"job_id": job_id, "state": status.state.value, "error": str(exc)}
        except (EventsUnavailable, TimeoutError) as exc:
            raise _unavailable(exc) from None
        return 200, {"job_id": job_id, "state": "succeeded", "result": value}

    def _events_args(self, request: Request
                     ) -> tuple[str | None, str | None, tuple[Position, str | None] | None]:
        job_id = request.param("job")
        if job_id is not None:
            job_id = _job_id(job_id)
        queue = request.param("queue")
        if queue is not None and not 0 < len(queue) <= MAX_QUEUE_NAME:
            raise HttpError(400, f"queue must be 1 to {MAX_QUEUE_NAME} characters")
        unknown = sorted(set(request.query) - {"job", "queue", "last_event_id"})
        if unknown:
            raise HttpError(400, f"unknown parameter(s) {', '.join(unknown)[:100]} "
                                 "(known: job, queue, last_event_id)")
        raw = request.headers.get("last-event-id") or request.param("last_event_id")
        try:
            last_event_id = parse_id(raw) if raw else None
        except ValueError as exc:
            raise HttpError(400, f"Last-Event-ID: {exc}") from None
        return job_id, queue, last_event_id


def _unavailable(exc: Exception) -> HttpError:
    """503 for a question the job events stream could not answer now (the broker is away,
    the stream missing): the reason, and when to ask again — not a 500 and a traceback."""
    why = redact(str(exc)) if isinstance(exc, EventsUnavailable) else ""
    return HttpError(503, why or "the job events stream did not answer in time",
                     {"Retry-After": RETRY_AFTER})


def _job_id(raw: str) -> str:
    try:
        return check_job_id(raw)
    except ConfigError as exc:
        raise HttpError(400, {"error": str(exc), "state": "invalid"}) from None
