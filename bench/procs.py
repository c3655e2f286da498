"""Worker subprocesses that never outlive their benchmark.

Every process starts in its own session (process group); :func:`stop` sends SIGTERM to the
group, then SIGKILL after a grace period. An ``atexit`` hook and SIGTERM/SIGINT handlers
kill whatever is still registered, so a crashed or interrupted harness leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LOGS: dict[int, Path] = {}
_LOG_DIR = Path(__file__).resolve().parent / "results" / "logs"


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """Stop ``proc`` and every process in its group."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    # children (Celery/Dramatiq forks) may survive their parent: kill the whole group
    _kill_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(2)
    _LIVE.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(_LIVE.values()):
        stop(proc, grace=1.0)


def start(args: list[str], env: dict[str, str] | None = None, name: str = "worker",
          cwd: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new process group; its output goes to ``bench/results/logs``."""
    _LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = _LOG_DIR / f"{name}-{int(time.time() * 1000)}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    full_env = dict(os.environ)
    full_env.update(env or {})
    root = str(Path(__file__).resolve().parent.parent)
    # BENCH_QW_SRC: another tree's src/ (bench.ab measures two versions of the code)
    src = full_env.pop("BENCH_QW_SRC", None) or str(Path(root) / "src")
    full_env["PYTHONPATH"] = os.pathsep.join(
        [src, root, *filter(None, [full_env.get("PYTHONPATH")])])
    proc = subprocess.Popen(
        args, env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=cwd or root,
    )
    log.close()
    _LIVE[proc.pid] = proc
    _LOGS[proc.pid] = log_path
    return proc


def python(module: str, *args: str, env: dict[str, str] | None = None,
           name: str | None = None) -> subprocess.Popen[bytes]:
    """``python -m module args`` with the harness's interpreter."""
    return start([sys.executable, "-m", module, *args], env=env, name=name or module)


def log_tail(proc: subprocess.Popen[bytes], lines: int = 15) -> str:
    """The end of a process's log (for error messages)."""
    path = _LOGS.get(proc.pid)
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def last_json_line(proc: subprocess.Popen[bytes], timeout: float, interval: float,
                         tail: int) -> tuple[dict[str, object] | None, int | None, str]:
    """Wait (at most ``timeout`` s) for a probe process that prints one JSON object as its
    last ``{`` line, then stop it: (that object or None, its exit code, its log tail)."""
    import asyncio
    import json

    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(interval)
        code = proc.poll()
        out = log_tail(proc, tail)
    finally:
        stop(proc)
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), None)
    return (json.loads(line) if code == 0 and line is not None else None), code, out


@contextlib.contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        stop(proc)


def _on_signal(signum: int, frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_handlers() -> None:
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    prune_logs()


def prune_logs(keep: int = 200) -> None:
    """Keep the newest ``keep`` worker logs."""
    if not _LOG_DIR.is_dir():
        return
    logs = sorted(_LOG_DIR.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()
