"""Test helpers for the job status API and webhooks: a webhook receiver (http.server in a
thread) and a Server-Sent Events reader."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from queuewatch.jobs import Jobs
    from queuewatch.jobs.web import JobsWeb


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


@dataclass
class Receiver:
    """Answers POSTs: ``fail_first`` 503s per delivery id, then 200; ``down`` answers 503 to
    everything; ``hang`` seconds of silence before answering. Records every delivery."""

    fail_first: int = 0
    down: bool = False
    hang: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)
    _tries: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.hang:
                    time.sleep(receiver.hang)
                delivery = self.headers.get("X-Queuewatch-Delivery", "")
                with receiver._lock:
                    receiver._tries[delivery] += 1
                    ok = not receiver.down and receiver._tries[delivery] > receiver.fail_first
                    status = 200 if ok else 503
                    receiver.deliveries.append(
                        Delivery(dict(self.headers.items()), body, status, time.time()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.status == 200]

    def refused(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.status != 200]


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str | None
    data: str


async def sse_events(client: httpx.AsyncClient, url: str, *,
                     last_event_id: str | None = None) -> AsyncIterator[SseEvent]:
    """Events of one SSE response, as they arrive (comments and the retry field skipped)."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    yield SseEvent(fields.get("id"), fields.get("event"), fields["data"])
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value


@contextlib.asynccontextmanager
async def served(jobs: Jobs, **options: object) -> AsyncIterator[tuple[JobsWeb, httpx.AsyncClient]]:
    """``JobsWeb`` on a free loopback port, and an HTTP client for it."""
    from queuewatch.jobs.web import JobsWeb

    app = JobsWeb(jobs, **options)  # type: ignore[arg-type]
    port = await app.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield app, client
    finally:
        await app.close()
