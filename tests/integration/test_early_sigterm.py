"""A SIGTERM that reaches a long-running command before it listens for one (while Python
imports queuewatch and the app, up to a second) stops it cleanly, exit 0, as a SIGTERM a
minute later does: it used to kill the process (exit -15). :mod:`queuewatch.stopsignal`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
#: An app whose import takes 2 s and says when it started: a SIGTERM sent then reaches the
#: command line before any worker could install its handler.
SLOW_APP = textwrap.dedent('''
    import os, time
    from pathlib import Path
    Path(os.environ["QWT_MARK"]).write_text("importing")
    time.sleep(2)
    from queuewatch.topology import QueueSpec, Topology
    from queuewatch.worker import Job, Worker

    def make_worker(settings):
        worker = Worker(settings, Topology(queues=(QueueSpec("jobs"),), delay_levels=1),
                        heartbeat_interval=0.5)

        @worker.job("jobs")
        async def handle(job: Job) -> None:
            pass

        return worker
''')


def _catches_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _spawn(argv: list[str], settings, tmp_path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "QWT_MARK": str(tmp_path / "mark"),
           "QUEUEWATCH_WEBHOOK_SECRET": "early-sigterm-test-secret",
           "QUEUEWATCH_STATE_DIR": str(settings.state_dir)}
    return subprocess.Popen([sys.executable, "-m", "queuewatch.cli.main", *argv], cwd=ROOT,
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stopped(proc: subprocess.Popen[bytes], log: Path) -> int:
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(log.read_text()[-3000:])


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_worker_sigterm_while_the_app_imports_stops_it_cleanly(
        settings, vhost, tmp_path, processes):
    # Given `queuewatch worker` importing an app that takes 2 s to import
    (tmp_path / "app.py").write_text(SLOW_APP)
    log = tmp_path / "worker.log"
    proc = _spawn(["worker", f"{tmp_path / 'app.py'}:make_worker", "--processes", processes,
                   "--amqp-url", settings.amqp_url, "--vhost", vhost,
                   "--management-url", settings.management_url, "-v"], settings, tmp_path, log)
    await wait_until(lambda: (tmp_path / "mark").exists() or proc.poll() is not None,
                     timeout=30, what="the app importing")
    assert proc.poll() is None, log.read_text()
    # When it gets SIGTERM then
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    # Then it stops cleanly, soon after the import, and no worker process was started
    assert _stopped(proc, log) == 0
    assert time.monotonic() - started < 30
    text = log.read_text()
    assert "Traceback" not in text
    assert "started (pid" not in text  # the supervisor started no child


@pytest.mark.parametrize("command", ["exporter", "serve", "webhooks", "scheduler", "worker"])
async def test_sigterm_as_soon_as_it_is_caught_stops_cleanly(settings, vhost, tmp_path, command):
    # Given a long-running command, signalled the moment the process catches SIGTERM at all
    # (the command line's hold, or the command's own handler if it is already up)
    (tmp_path / "app.py").write_text(SLOW_APP.replace("time.sleep(2)", "pass"))
    argv = {"exporter": ["exporter", "--port", "0"], "serve": ["serve", "--port", "0"],
            "webhooks": ["webhooks"], "scheduler": ["scheduler"],
            "worker": ["worker", f"{tmp_path / 'app.py'}:make_worker", "--processes", "2"]}
    log = tmp_path / "out.log"
    proc = _spawn([*argv[command], "--amqp-url", settings.amqp_url, "--vhost", vhost,
                   "--management-url", settings.management_url], settings, tmp_path, log)
    await wait_until(lambda: proc.poll() is not None or _catches_sigterm(proc.pid),
                     timeout=30, interval=0.001, what="SIGTERM caught")
    proc.send_signal(signal.SIGTERM)
    # Then it exits 0, without a traceback
    assert _stopped(proc, log) == 0
    assert "Traceback" not in log.read_text()


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter (its signal handlers its own)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)


def test_a_held_sigterm_is_delivered_again_on_release():
    # A one-shot command releases the hold after parsing: a SIGTERM meanwhile still kills it
    code = ("import os, signal; from queuewatch import stopsignal; stopsignal.hold(); "
            "os.kill(os.getpid(), signal.SIGTERM); print('held', flush=True); "
            "stopsignal.release(); print('not reached')")
    out = _python(code)
    assert out.returncode == -signal.SIGTERM
    assert out.stdout == "held\n"


def test_the_console_script_holds_sigterm_before_the_command_lines_imports():
    # The installed `queuewatch` command enters through queuewatch.cli.entry, which must stay
    # light: holding SIGTERM there closes all but the interpreter's own start
    code = ("import sys; from queuewatch.cli import entry; "
            "print(sorted(m for m in ('argparse', 'logging', 'queuewatch.cli.main') "
            "if m in sys.modules))")
    out = _python(code)
    assert out.stdout.strip() == "[]", out.stderr
    import tomllib
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["queuewatch"] == "queuewatch.cli.entry:main"


def test_release_gives_back_the_handler_before_and_threads_leave_it_alone():
    # main() run in a thread (tests do) cannot set handlers: hold and release do nothing
    # there; in the main thread, release puts back the handler hold replaced
    code = """
import os, signal, threading
from queuewatch import stopsignal
seen = []
signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
t = threading.Thread(target=lambda: (stopsignal.hold(), stopsignal.release()))
t.start(); t.join()
os.kill(os.getpid(), signal.SIGTERM)
stopsignal.hold(); stopsignal.hold()
os.kill(os.getpid(), signal.SIGTERM)
stopsignal.release()
print(len(seen), stopsignal.take())
"""
    out = _python(code)
    assert (out.returncode, out.stdout) == (0, "2 False\n"), out.stderr
