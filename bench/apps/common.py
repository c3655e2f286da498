"""What every bench worker program shares: parameters and latency recording."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TextIO

AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
QUEUE = os.environ.get("BENCH_QUEUE", "bench")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "10"))
PREFETCH = int(os.environ.get("BENCH_PREFETCH", "100"))
JOB = os.environ.get("BENCH_JOB", "noop")
IO_SECONDS = 0.005
#: CPU a "cpu" job spends (seconds of its thread's CPU time, spinning in Python).
CPU_SECONDS = 0.001
#: x-max-priority of the peers' queues (0: their default, no priorities). The harness sets
#: it to queuewatch's default so every system consumes the same kind of queue.
PEER_PRIORITY = int(os.environ.get("BENCH_PEER_PRIORITY", "0"))

_latency_file: TextIO | None = None


def spin(seconds: float = CPU_SECONDS) -> None:
    """Spend ``seconds`` of this thread's CPU time (a CPU-bound job; holds the GIL)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def record_latency(published_at: float) -> None:
    """Append ``now - published_at`` (seconds) to this process's latency file."""
    global _latency_file
    if _latency_file is None:
        directory = Path(os.environ.get("BENCH_LATENCY_DIR", "."))
        _latency_file = open(directory / f"lat-{os.getpid()}.txt", "a", buffering=1)  # noqa: SIM115
    _latency_file.write(f"{time.time() - published_at:.6f}\n")
