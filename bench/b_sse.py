"""The live event stream: fan-out of job events over SSE to 1 vs 100 clients.

``queuewatch serve`` runs as its own process; the clients (raw asyncio sockets that count
events, so their own cost stays small) connect to ``GET /events``, then job events are
recorded straight into the stream (3 per job). Measured: the time from the first record to
the moment every client holds every event, as events/s per client. Baseline for the ratio:
one client in the same run (interleaved), so the ratio says what fanning out costs.

Run alone: ``python -m bench.b_sse [--quick]`` (or ``python -m bench --only sse`` once the
runner lists it).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time

from bench.harness import Bench, Section, Target, compare, rate_row, verdict
from bench.stats import fmt_ratio, ratio
from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.events import model as ev
from queuewatch.events.model import Event, Source
from queuewatch.events.recorder import EventRecorder

QUEUEWATCH = os.path.join(os.path.dirname(sys.executable), "queuewatch")
KINDS = (ev.ACCEPTED, ev.STARTED, ev.SUCCEEDED)


async def _record(settings: Settings, total: int) -> None:
    link = BrokerLink(settings, name="bench-sse")
    await link.open(30)
    recorder = EventRecorder(link, settings)
    source = Source("bench")
    try:
        now = int(time.time() * 1000)
        for n in range(total // len(KINDS)):
            for i, kind in enumerate(KINDS):
                recorder.emit(Event(kind, f"job-{n:07d}", "bench", 1, source, at_ms=now + i))
        await recorder.flush()
    finally:
        await recorder.close()
        await link.close()


async def _client(port: int, expected: int, ready: asyncio.Event, counts: list[int]) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /events?queue=bench HTTP/1.1\r\nHost: bench\r\n\r\n")
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    counts.append(0)
    me = len(counts) - 1
    ready.set()
    seen, tail = 0, b""
    try:
        while seen < expected:
            chunk = await reader.read(65536)
            if not chunk:
                raise RuntimeError("the server closed the stream early")
            data = tail + chunk
            seen += data.count(b"\ndata: ") - tail.count(b"\ndata: ")
            tail = data[-8:]
            counts[me] = seen
        return time.perf_counter()
    finally:
        writer.close()


def _fan_out(total: int, clients: int):  # type: ignore[no-untyped-def]
    async def measure(settings: Settings) -> float:
        with tempfile.TemporaryDirectory(prefix="qwbench-sse-") as state:
            env = {**os.environ, "XDG_STATE_HOME": state, "QUEUEWATCH_AMQP_URL": settings.amqp_url}
            proc = await asyncio.create_subprocess_exec(
                QUEUEWATCH, "serve", "--port", "0", "--vhost", settings.effective_vhost,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
            try:
                assert proc.stdout is not None
                line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
                match = re.search(r":(\d+)/", line)
                if not match:
                    raise RuntimeError(f"queuewatch serve did not start: {line!r}")
                port = int(match.group(1))
                counts: list[int] = []
                ready = [asyncio.Event() for _ in range(clients)]
                tasks = [asyncio.create_task(_client(port, total, r, counts)) for r in ready]
                await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 60)
                await asyncio.sleep(0.5)
                t0 = time.perf_counter()
                await _record(settings, total)
                ends = await asyncio.wait_for(asyncio.gather(*tasks), 600)
                return total / (max(ends) - t0)
            finally:
                proc.terminate()
                await proc.wait()
    return measure


async def run(bench: Bench) -> list[Section]:
    total = bench.size(30_000, 3_000)
    section = Section(
        key="sse-fanout",
        title=f"Live events over SSE: fan-out to 100 clients ({total:,} events)",
        measures=("`queuewatch serve` in its own process; N clients stream `GET /events?queue=` "
                  "while job events are recorded into the stream. Events/s = events / time "
                  "until the slowest client has them all. Baseline: 1 client, same run."),
        columns=["system", "result", "ratio"],
    )
    results = await compare(bench, [("sse-1", _fan_out(total, 1)),
                                    ("sse-100", _fan_out(total, 100))], "/s")
    one, why_one = results["sse-1"]
    many, why_many = results["sse-100"]
    section.rows.append(rate_row("1 client (baseline)", one, one, na=why_one))
    section.rows.append(rate_row("100 clients (each)", many, one, na=why_many))
    r = ratio(many, one)
    section.targets.append(Target("SSE fan-out to 100 clients vs 1", "measured (no goal set)",
                                  fmt_ratio(r), verdict(None), why_many or why_one))
    return [section]


if __name__ == "__main__":
    from bench.harness import BenchConfig, make_settings
    from bench.stats import Stat
    from queuewatch.broker.management import ManagementClient

    async def main() -> None:
        quick = "--quick" in sys.argv
        settings = make_settings()
        async with ManagementClient(settings) as mgmt:
            bench = Bench(settings, mgmt, BenchConfig(quick=quick, runs=1 if quick else 3))
            for s in await run(bench):
                print(s.title)
                for row in s.rows:
                    value = row.value.fmt() if isinstance(row.value, Stat) else "n/a"
                    print(f"  {row.label}: {value}  ratio {row.cells.get('ratio')}  {row.note}")

    asyncio.run(main())
