"""A minimal asyncio HTTP/1.1 server for the job status API (stdlib only).

Enough HTTP for ``GET`` requests from services, browsers (EventSource) and curl: one request
per connection (``Connection: close``), bounded request heads, a deadline to send them, and
responses that are either a whole body or a stream (Server-Sent Events). Anything it cannot
parse is a 400 — never a traceback on the wire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from queuewatch.aio import wait_for

log = logging.getLogger(__name__)

#: Longest request head (request line + headers) accepted, bytes.
MAX_HEAD = 16_384
#: Most headers in one request.
MAX_HEADERS = 100
#: Seconds a client gets to send its request head.
HEAD_TIMEOUT = 10.0
#: Connections served at once (live streams included); one more is answered 503.
MAX_CLIENTS = 1024


class HttpError(Exception):
    """An answer other than 200, raised by a route: status, a JSON body, extra headers."""

    def __init__(self, status: int, body: Mapping[str, Any] | str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = {"error": body} if isinstance(body, str) else dict(body)
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    path: str
    """Percent-decoded per segment by the router (here: as sent)."""
    query: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)
    """Names in lower case."""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    @property
    def segments(self) -> list[str]:
        """The path's segments, each percent-decoded (``/jobs/a%2Fb`` -> ``["jobs", "a/b"]``)."""
        return [unquote(s, errors="strict") for s in self.path.split("/")[1:]]


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request head; None when the client closed first. Raises HttpError(400/431)."""
    try:
        head = await wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError(400, "incomplete request") from None
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head over {MAX_HEAD} bytes") from None
    except TimeoutError:
        raise HttpError(408, "request head not sent in time") from None
    try:
        text = head.decode("iso-8859-1")
        line, *lines = text[:-4].split("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise HttpError(505, "HTTP/1.x only")
    if len(lines) > MAX_HEADERS:
        raise HttpError(431, "too many headers")
    headers: dict[str, str] = {}
    for raw in lines:
        name, colon, value = raw.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, "malformed header line")
        headers[name.lower()] = value.strip()
    if not target.isascii():
        # Raw UTF-8 in the target (curl sends it as typed; the standard wants it
        # percent-encoded): encoded here, so the path's decoding reads it as UTF-8.
        target = "".join(c if c.isascii() else f"%{ord(c):02X}" for c in target)
    try:
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False,
                         errors="strict", max_num_fields=50)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "malformed request target") from None
    if not parts.path.startswith("/"):
        raise HttpError(400, "the request target must be a path")
    await _discard_body(reader, headers)
    return Request(method, target, parts.path, query, headers)


async def _discard_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> None:
    """Read (and drop) a body nobody asked for, so the answer is not lost to a TCP reset."""
    if "transfer-encoding" in headers:
        raise HttpError(411, "no request bodies here (GET only)")
    raw = headers.get("content-length", "0")
    # (ASCII digits only: str.isdigit() also takes '²', which int() then refuses)
    if not (raw.isascii() and raw.isdigit()):
        raise HttpError(400, "malformed Content-Length")
    if int(raw) > MAX_HEAD:
        raise HttpError(413, "no request bodies here (GET only)")
    try:
        await wait_for(reader.readexactly(int(raw)), HEAD_TIMEOUT)
    except (asyncio.IncompleteReadError, TimeoutError):
        raise HttpError(400, "incomplete request body") from None


def head_bytes(status: int, headers: Mapping[str, str]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Status"
    lines = [f"HTTP/1.1 {status} {phrase}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_json(writer: asyncio.StreamWriter, status: int, body: Any,
                    headers: Mapping[str, str] | None = None, *, head_only: bool = False) -> None:
    data = json.dumps(body, separators=(",", ":"), default=str).encode()
    all_headers = {"Content-Type": "application/json", "Content-Length": str(len(data)),
                   "Cache-Control": "no-store", "Connection": "close", **(headers or {})}
    writer.write(head_bytes(status, all_headers) + (b"" if head_only else data))
    await writer.drain()


Handler = Callable[[Request, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class HttpServer:
    """Serves ``handler`` on ``host:port`` (TLS when ``ssl_context``); ``start`` returns
    the port (0 picks a free one)."""

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.handler = handler
        self.max_clients = max_clients
        self.ssl_context = ssl_context
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.server = await asyncio.start_server(
            self._serve, host, port, ssl=self.ssl_context, limit=MAX_HEAD)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        request: Request | None = None
        try:
            try:
                request = await read_request(reader)
                if request is not None and len(self._clients) > self.max_clients:
                    raise HttpError(503, f"too many connections (at most {self.max_clients})",
                                    {"Retry-After": "5"})
                if request is not None:
                    await self.handler(request, reader, writer)
            except HttpError as exc:
                await send_json(writer, exc.status, exc.body, exc.headers,
                                head_only=request is not None and request.method == "HEAD")
        except (ConnectionError, TimeoutError, ssl.SSLError) as exc:
            log.debug("client connection: %s", exc)
        except asyncio.CancelledError:
            pass
        except Exception:  # the outermost edge of one request: answer 500, keep serving
            log.exception("the job status API failed on a request")
            try:
                await send_json(writer, 500, {"error": "internal error (see the server log)"})
            except (ConnectionError, RuntimeError):
                pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
                pass
