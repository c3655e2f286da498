"""The minimal HTTP server under the job status API: bad requests, limits, no tracebacks."""

from __future__ import annotations

import asyncio

from queuewatch.jobs.httpd import HttpServer, Request, send_json


async def _ask(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_bad_requests_get_a_4xx_and_a_crash_a_500_without_traceback() -> None:
    async def handler(request: Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        if request.path == "/boom":
            raise RuntimeError("secret internals")
        await send_json(writer, 200, {"path": request.path, "q": request.param("q")})

    server = HttpServer(handler)
    port = await server.start()
    try:
        ok = await _ask(port, b"GET /x?q=1&q=2 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b'{"path":"/x","q":"2"}')
        for raw, status in ((b"GARBAGE\r\n\r\n", b"400"), (b"GET / SPDY/3\r\n\r\n", b"505"),
                            (b"GET x HTTP/1.1\r\n\r\n", b"400"),
                            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"400"),
                            (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", b"431")):
            answer = await _ask(port, raw)
            assert answer.startswith(b"HTTP/1.1 " + status), (raw[:40], answer[:60])
        body = await _ask(port, b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        assert body.startswith(b"HTTP/1.1 200 ")  # (the handler decides on methods)
        big = await _ask(port, b"POST /x HTTP/1.1\r\nContent-Length: 999999\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 413 ")
        # A length that is not ASCII digits ('\xb2' is '²' in Latin-1, a digit to
        # str.isdigit()): a 400, not a 500 with a ValueError traceback in the log
        for length in (b"\xb2", b"-1", b"abc", b"1 2"):
            bad = await _ask(port, b"GET /x HTTP/1.1\r\nContent-Length: " + length + b"\r\n\r\n")
            assert bad.startswith(b"HTTP/1.1 400 ") and b"Content-Length" in bad, (length, bad[:80])
        crash = await _ask(port, b"GET /boom HTTP/1.1\r\n\r\n")
        assert crash.startswith(b"HTTP/1.1 500 ") and b"secret" not in crash
    finally:
        await server.close()


async def test_connections_past_the_cap_are_refused_with_503() -> None:
    release = asyncio.Event()

    async def handler(request: Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        await release.wait()
        await send_json(writer, 200, {})

    server = HttpServer(handler, max_clients=1)
    port = await server.start()
    try:
        first = asyncio.create_task(_ask(port, b"GET / HTTP/1.1\r\n\r\n"))
        await asyncio.sleep(0.2)
        second = await _ask(port, b"GET / HTTP/1.1\r\n\r\n")
        assert second.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in second
        release.set()
        assert (await first).startswith(b"HTTP/1.1 200 ")
    finally:
        await server.close()


async def test_a_raw_utf8_target_is_read_as_utf8() -> None:
    from urllib.parse import unquote
    seen: list[str] = []

    async def handler(request: Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        seen.append(unquote(request.path, errors="strict"))
        await send_json(writer, 200, {})

    server = HttpServer(handler)
    port = await server.start()
    try:
        # Given a job id typed with a non-ASCII letter, sent raw (as curl does) or encoded
        for raw in ("/jobs/bücher-1".encode(), b"/jobs/b%C3%BCcher-1"):
            answer = await _ask(port, b"GET " + raw + b" HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 ")
        # Then both name the same job (not 'bÃ¼cher-1' for the raw one)
        assert seen == ["/jobs/bücher-1", "/jobs/bücher-1"]
    finally:
        await server.close()


def test_an_ipv6_bind_address_is_bracketed_in_urls() -> None:
    from queuewatch.webconfig import WebConfig
    assert WebConfig().base_url("::1", 9673) == "http://[::1]:9673"
    assert WebConfig().base_url("127.0.0.1", 9672) == "http://127.0.0.1:9672"
