"""Running the ``queuewatch`` CLI as a user would (a subprocess) and judging its errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def qw(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``queuewatch ARGS`` with no QUEUEWATCH_* from the caller's environment but ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "queuewatch.cli.main", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    """Exit 2, exactly one line on stderr containing ``fragment``, no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in lines[0], lines[0]
