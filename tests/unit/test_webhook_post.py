"""The webhook POST itself (no broker): basic auth from the URL, and a deadline for the whole
answer rather than for each read."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from queuewatch.jobs.webhooks import DeliveryFailed, post


@contextmanager
def receiver(answer: bytes, *, byte_every: float = 0.0, after: int = 0) -> Iterator[tuple[str, list[bytes]]]:
    """A one-connection-at-a-time receiver: reads the request, sends ``answer`` (its first
    ``after`` bytes at once, the rest a byte every ``byte_every`` s); the requests it read."""
    server = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                requests.append(_read_request(conn))
                try:
                    conn.sendall(answer[:after])
                    for ch in answer[after:]:
                        if stop.wait(byte_every):
                            return
                        conn.sendall(bytes([ch]))
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}", requests
    finally:
        stop.set()
        server.close()


def _read_request(conn: socket.socket) -> bytes:
    """The whole request, its body included: closing with part of it unread would reset the
    connection under the client's read of the answer (http.client sends the body apart)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_credentials_in_the_url_are_sent_as_basic_auth_not_as_the_host() -> None:
    with receiver(OK) as (addr, requests):
        # (a password with an encoded '/' and a ':' in it)
        assert post(f"http://hooks:p%2Fw:x@{addr}/hook?t=1", b"{}", {}, 5) == 200
    head = requests[0].decode()
    assert head.startswith("POST /hook?t=1 HTTP/1.1")
    assert "Authorization: Basic aG9va3M6cC93Ong=" in head  # hooks:p/w:x


def test_a_url_with_credentials_and_no_port_fails_without_showing_them() -> None:
    # (before: http.client's InvalidURL "nonnumeric port: 'secret@127.0.0.1'" escaped)
    with pytest.raises(DeliveryFailed) as caught:
        post("http://hooks:secret-pw@127.0.0.1/hook", b"{}", {}, 2)
    assert "secret-pw" not in str(caught.value)
    assert str(caught.value).startswith("http://127.0.0.1 unreachable")


def test_an_answer_sent_a_byte_at_a_time_fails_at_the_timeout() -> None:
    with receiver(OK, byte_every=0.3) as (addr, _):  # ~12 s for the whole answer
        t0 = time.monotonic()
        with pytest.raises(DeliveryFailed, match="did not answer within 1s"):
            post(f"http://{addr}/hook", b"{}", {}, 1)
        assert time.monotonic() - t0 < 3


def test_a_status_that_came_counts_even_when_its_body_is_cut_at_the_timeout() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    head = answer.index(b"\r\n\r\n") + 4
    with receiver(answer, byte_every=0.3, after=head) as (addr, _):
        t0 = time.monotonic()
        assert post(f"http://{addr}/hook", b"{}", {}, 1) == 200
        assert time.monotonic() - t0 < 3
