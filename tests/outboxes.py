"""Test helpers for the producer outbox: a producer in its own process (so it can be killed
-9) that publishes ``j-0`` .. ``j-N-1`` in chunks of concurrent publishes, notes each chunk
once every publish of it returned, then keeps draining its outbox and reports the depth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPT = r'''
import asyncio, sys, time
from pathlib import Path
from queuewatch.config import Settings
from queuewatch.producer import AsyncProducer

async def main() -> None:
    url, outdir, ledger, n, chunk = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    settings = Settings(amqp_url=url, outbox_dir=outdir, state_dir=outdir / "state",
                        job_events=False, reconnect_max_delay=1.0)
    producer = AsyncProducer(settings, connection_name="outbox-test", reconnect_timeout=5.0)
    await producer.connect()
    print("CONNECTED", flush=True)
    done = set(ledger.read_text().split()) if ledger.exists() else set()
    ids = [f"j-{i}" for i in range(n) if f"j-{i}" not in done]
    t0 = time.monotonic()
    spooled = 0
    with ledger.open("a") as f:
        for k in range(0, len(ids), chunk):
            part = ids[k:k + chunk]
            got = await asyncio.gather(*(producer.publish("jobs", {"id": j}, job_id=j) for j in part))
            spooled += sum(p.spooled for p in got)
            f.write("".join(j + "\n" for j in part))
            f.flush()
    print(f"PUBLISHED {len(ids)} {time.monotonic() - t0:.3f} {spooled}", flush=True)
    while True:
        assert producer.outbox is not None
        print(f"DEPTH {producer.outbox.depth} {producer.outbox.sent}", flush=True)
        await asyncio.sleep(0.2)

asyncio.run(main())
'''


@dataclass
class ProducerProcess:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def published(self) -> tuple[int, float, int] | None:
        """(jobs, seconds, of which spooled) once every publish returned."""
        for line in self.lines():
            if line.startswith("PUBLISHED "):
                _, n, secs, spooled = line.split()
                return int(n), float(secs), int(spooled)
        return None

    def depth(self) -> int | None:
        last = [line for line in self.lines() if line.startswith("DEPTH ")]
        return int(last[-1].split()[1]) if last else None

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def start_producer(tmp_path: Path, tag: str, *, amqp_url: str, outbox: Path, ledger: Path,
                   n: int, chunk: int = 100) -> ProducerProcess:
    script = tmp_path / "outbox_producer.py"
    script.write_text(SCRIPT)
    out, err = tmp_path / f"producer-{tag}.out", tmp_path / f"producer-{tag}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, str(script), amqp_url, str(outbox), str(ledger),
                                 str(n), str(chunk)], stdin=subprocess.DEVNULL, stdout=o,
                                stderr=e, start_new_session=True)
    return ProducerProcess(proc, out, err)
