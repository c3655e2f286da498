"""Test helpers for recurring jobs: ``queuewatch scheduler`` in a subprocess (its own
session, so a kill -9 hits only it), and when it took the lead."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.workers import QUEUEWATCH


@dataclass
class SchedulerProcess:
    proc: subprocess.Popen[bytes]
    name: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def leads_at(self) -> float | None:
        """Epoch time of the log line saying it took the lead (None: it never did)."""
        m = re.search(r"^(\S+ \S+) WARNING scheduler \S+ leads$", self.stderr(), re.M)
        if m is None:
            return None
        return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()

    def kill9(self) -> float:
        os.kill(self.proc.pid, signal.SIGKILL)
        at = time.time()
        self.proc.wait(10)
        return at

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"scheduler {self.name} did not stop:\n{self.stderr()[-3000:]}") from None


def start_scheduler(tmp_path: Path, *, amqp_url: str, vhost: str, name: str,
                    topology: Path, extra_env: dict[str, str] | None = None) -> SchedulerProcess:
    err = tmp_path / f"scheduler-{name}.stderr"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / f"state-{name}"), **(extra_env or {}))
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [QUEUEWATCH, "scheduler", "--topology", str(topology), "--name", name,
             "--amqp-url", amqp_url, "--vhost", vhost],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
            start_new_session=True)
    return SchedulerProcess(proc, name, err)
