"""Run N worker processes and keep them running: ``queuewatch worker --processes N``.

A :class:`Supervisor` starts N children (each a whole ``queuewatch worker`` running the same
app with ``--processes 1``, so each has its own event loop, connection, heartbeat, worker id
and metrics port), and:

* restarts a child that exits while no stop was asked for, after a pause from the one
  reconnect policy (:class:`~queuewatch.broker.policy.ReconnectPolicy`: exponential backoff,
  full jitter, a cap); a child that ran :data:`STABLE_AFTER` seconds starts its backoff over;
* on SIGTERM/SIGINT forwards SIGTERM to every child and waits for them to shut down
  gracefully (in-flight jobs finish, the rest go back to the queue), up to
  ``shutdown_timeout``; a child still running then is killed (its unacked jobs are
  redelivered by the broker: nothing is lost);
* on Linux, asks the kernel to SIGTERM the children if the supervisor itself dies.

The children share the host's idempotency store (SQLite in WAL mode, busy timeout 30 s:
several processes may read and write it at once; see :mod:`queuewatch.idempotency`).
The supervisor never prints: it logs, and :meth:`Supervisor.run` returns an exit code.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

from queuewatch import stopsignal
from queuewatch.broker.policy import Backoff, ReconnectPolicy

log = logging.getLogger(__name__)

#: Restart backoff: first pause up to 0.5 s, doubling, capped at 30 s.
RESTART_POLICY = ReconnectPolicy(initial=0.5, factor=2.0, cap=30.0)
#: A child that ran this long (seconds) before it died starts its backoff over.
STABLE_AFTER = 30.0
#: Seconds between two looks at the children.
TICK = 0.1
#: Extra seconds, beyond the workers' own shutdown timeout, before a child is killed.
KILL_GRACE = 10.0
_PR_SET_PDEATHSIG = 1


def default_processes() -> int:
    """One per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    """One supervised worker process (slot ``index``, 1-based)."""

    index: int
    backoff: Backoff
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


class Supervisor:
    """See the module docstring. ``command(i)`` / ``env(i)`` give child ``i``'s argv and
    extra environment (1-based)."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        processes: int,
        *,
        env: Callable[[int], Mapping[str, str]] = lambda i: {},
        shutdown_timeout: float = 30.0 + KILL_GRACE,
        policy: ReconnectPolicy = RESTART_POLICY,
        stable_after: float = STABLE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.command = command
        self.env = env
        self.shutdown_timeout = shutdown_timeout
        self.stable_after = stable_after
        self.clock = clock
        self.children = [Child(i, policy.backoff()) for i in range(1, processes + 1)]
        self._stop_signal: int | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        """Ask for a graceful stop (safe from a signal handler)."""
        self._stop_signal = signum

    def run(self, *, handle_signals: bool = True) -> int:
        """Start the children, keep them running until stopped; 0 when every child then
        shut down cleanly, 1 when one had to be killed."""
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self.stop)
            if stopsignal.take():  # asked to stop before it could listen: start none
                self.stop()
        try:
            for child in self.children if self._stop_signal is None else ():
                self._start(child)
            while self._stop_signal is None:
                self._tend()
                time.sleep(TICK)
        finally:
            clean = self._shutdown()
        return 0 if clean else 1

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in self.children if c.proc is not None and c.proc.poll() is None]

    # -- children -----------------------------------------------------------------------
    def _start(self, child: Child) -> None:
        env = {**os.environ, **self.env(child.index)}
        child.proc = subprocess.Popen(
            list(self.command(child.index)), env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        child.started_at = self.clock()
        child.restart_at = None
        log.info("worker process %d started (pid %d)%s", child.index, child.proc.pid,
                    f", restart {child.restarts}" if child.restarts else "")

    def _tend(self) -> None:
        now = self.clock()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self._start(child)
                continue
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                continue
            child.exits.append(code)
            if now - child.started_at >= self.stable_after:
                child.backoff.reset()
            pause = child.backoff.next_delay()
            child.restart_at = now + pause
            log.warning("worker process %d (pid %d) exited with %s; restarting in %.1fs",
                        child.index, child.proc.pid, _describe(code), pause)

    def _shutdown(self) -> bool:
        """SIGTERM every running child, wait, kill what is left; True when none was killed."""
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            _signal(proc, signal.SIGTERM)
        deadline = self.clock() + self.shutdown_timeout
        clean = True
        for proc in running:
            try:
                proc.wait(max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.warning("worker process pid %d did not stop in %.0fs: killed", proc.pid,
                            self.shutdown_timeout)
                _signal(proc, signal.SIGKILL)
                proc.wait()
                clean = False
        return clean


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
