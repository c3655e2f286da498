"""A loopback TCP proxy for link faults: forward, cut, black-hole, restore.

It runs its own event loop in a thread, so sync tests, async tests and Textual Pilot tests
can all use it, and so can a person (``python -m tests.proxy 127.0.0.1:5672``)::

    with TcpProxy(("127.0.0.1", 5672)) as proxy:   # listens on 127.0.0.1:<proxy.port>
        ...connect clients to proxy.port...
        proxy.cut()        # reset every open connection and refuse new ones
        proxy.blackhole()  # keep connections open but forward nothing (a silent network)
        proxy.restore()    # forward again (new connections only, after a cut)

Only loopback addresses are ever used.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import TracebackType

_CHUNK = 65536


class TcpProxy:
    def __init__(self, target: tuple[str, int], listen_port: int = 0) -> None:
        host, _port = target
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            raise ValueError("TcpProxy only forwards to loopback addresses")
        self.target = target
        self.mode = "forward"
        """forward / cut / blackhole."""
        self.connections_seen = 0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._server: asyncio.AbstractServer | None = None
        self.port = self._call(self._start(listen_port))

    # -- control (any thread) -----------------------------------------------------------
    def cut(self) -> None:
        """Reset every open connection and refuse new ones until :meth:`restore`."""
        self._call(self._set("cut"))

    def blackhole(self) -> None:
        """Keep connections (and accept new ones) but forward nothing."""
        self._call(self._set("blackhole"))

    def restore(self) -> None:
        """Forward again. Connections cut earlier stay gone; black-holed ones resume."""
        self._call(self._set("forward"))

    @property
    def open_connections(self) -> int:
        return len(self._writers) // 2

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the loop -------------------------------------------------------------------------
    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self, listen_port: int) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", listen_port,
                                                  reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        self._reset_all()
        if self._server is not None:
            self._server.close()

    async def _set(self, mode: str) -> None:
        self.mode = mode
        if mode == "cut":
            self._reset_all()

    def _reset_all(self) -> None:
        for w in list(self._writers):
            sock = w.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: the peer sees a reset, as after a pulled cable and a timeout
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            w.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections_seen += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            while self.mode == "blackhole":
                await asyncio.sleep(0.05)  # hold the bytes: nothing passes, nothing closes
            if writer not in self._writers:
                break
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


@contextlib.contextmanager
def proxied(port: int, host: str = "127.0.0.1") -> Iterator[TcpProxy]:
    proxy = TcpProxy((host, port))
    try:
        yield proxy
    finally:
        proxy.close()


def main(argv: list[str]) -> int:
    """``python -m tests.proxy TARGET_HOST:PORT [LISTEN_PORT]``; then type cut / blackhole /
    restore / quit on stdin (for trying link faults by hand)."""
    host, _, port = argv[0].rpartition(":")
    proxy = TcpProxy((host or "127.0.0.1", int(port)), int(argv[1]) if len(argv) > 1 else 0)
    print(f"listening on 127.0.0.1:{proxy.port} -> {proxy.target}", flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd in ("cut", "blackhole", "restore"):
                getattr(proxy, cmd)()
                print(f"{cmd} at {time.strftime('%H:%M:%S')}", flush=True)
            elif cmd == "quit":
                break
    finally:
        proxy.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
