"""Where the cores went during a measurement: the broker's CPU and the machine's idle time
over a window (psutil). The worker-process benchmarks report it, because on a machine that
runs the broker too, a second worker process only gains what the broker leaves idle."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psutil


def broker_process(amqp_url: str) -> psutil.Process | None:
    """The ``beam.smp`` listening on ``amqp_url``'s port (None when not found here)."""
    port = urlsplit(amqp_url).port or 5672
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "beam.smp":
            continue
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in proc.net_connections("tcp")):
                return proc
        except psutil.Error:
            continue
    return None


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


@dataclass
class CpuWindow:
    """Cores used by the broker and cores left idle between :meth:`begin` and :meth:`end`."""

    broker: psutil.Process | None
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(broker cores, idle cores) of each window."""
    _start: tuple[float, float, float] | None = None

    @classmethod
    def for_url(cls, amqp_url: str) -> CpuWindow:
        return cls(broker_process(amqp_url))

    def begin(self) -> None:
        self._start = (time.monotonic(), _cpu(self.broker), psutil.cpu_times().idle)

    def end(self) -> None:
        if self._start is None:
            return
        t0, b0, i0 = self._start
        wall = time.monotonic() - t0
        if wall > 0:
            self.samples.append(((_cpu(self.broker) - b0) / wall,
                                 (psutil.cpu_times().idle - i0) / wall))
        self._start = None

    def text(self) -> str:
        if not self.samples:
            return "n/a"
        broker = sorted(b for b, _ in self.samples)[len(self.samples) // 2]
        idle = sorted(i for _, i in self.samples)[len(self.samples) // 2]
        who = "" if self.broker is not None else " (broker process not found)"
        return f"broker {broker:.2f} cores, idle {idle:.2f} cores{who}"
