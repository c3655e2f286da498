"""``queuewatch demo`` starts its services and the console, and leaves no process behind."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from queuewatch.cli.cmd_demo import Supervisor, demo_commands

STUBBORN = """
import os, signal, subprocess, sys, time
# A grandchild in the same process group that ignores SIGTERM (only SIGKILL ends it).
subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(120)
"""


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_supervisor_stops_children_and_their_groups(tmp_path: Path):
    # Given a polite child and a stubborn one that ignores SIGTERM and has a grandchild
    # (processes this worker already had — e.g. a session's throwaway RabbitMQ nodes — are
    # not the supervisor's family)
    before = {p.pid for p in descendants(os.getpid())}
    sup = Supervisor(tmp_path / "logs")
    sup.start("polite", [sys.executable, "-c", "import time; time.sleep(120)"])
    sup.start("stubborn", [sys.executable, "-c", STUBBORN])
    deadline = time.monotonic() + 10
    while len([p for p in descendants(os.getpid()) if p.pid not in before]) < 3 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    family = [p for p in descendants(os.getpid()) if p.pid not in before]
    assert len(alive(family)) >= 3
    # When the supervisor stops them with a short grace period
    started = time.monotonic()
    sup.stop(grace=1.0)
    # Then every process (grandchild included) is gone, SIGKILL after the grace period
    time.sleep(0.2)
    assert alive(family) == []
    assert time.monotonic() - started < 10
    # And stopping twice is harmless
    sup.stop(grace=0.1)


def test_supervisor_restarts_a_crashed_child(tmp_path: Path):
    sup = Supervisor(tmp_path / "logs")
    try:
        child = sup.start("crashy", [sys.executable, "-c", "import sys; sys.exit(3)"])
        first = child.process.pid if child.process else None
        deadline = time.monotonic() + 10
        while child.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert child.restarts >= 1 and child.process is not None and child.process.pid != first
    finally:
        sup.stop(grace=0.5)


def run_demo(settings, *extra: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "QUEUEWATCH_AMQP_URL": settings.amqp_url,
           "QUEUEWATCH_MANAGEMENT_URL": settings.management_url,
           "XDG_STATE_HOME": str(settings.state_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "queuewatch.cli.main", "demo", "--headless", "--vhost",
         settings.effective_vhost, "--interval", "0.5", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def watch_family(proc: subprocess.Popen[bytes], seconds: float) -> list[psutil.Process]:
    """Every descendant seen while ``proc`` runs (up to ``seconds``)."""
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        for p in descendants(proc.pid):
            seen.setdefault(p.pid, p)
        time.sleep(0.1)
    return list(seen.values())


@pytest.mark.timeout(90)
def test_demo_starts_and_exits_cleanly(settings, mgmt, tmp_path):
    # Given the demo run headless, quitting by itself after a few seconds
    shot = tmp_path / "demo.svg"
    proc = run_demo(settings, "--exit-after", "6", "--screenshot", str(shot))
    family = watch_family(proc, 60)
    out, err = proc.communicate(timeout=30)
    # Then it ends with 0 and says it stopped its processes
    assert proc.returncode == 0, err.decode()
    assert b"demo stopped" in out
    # And the screenshot it saved shows the console on the demo vhost
    svg = shot.read_text()
    assert "queuewatch" in svg and settings.effective_vhost[:20] in svg.replace("&#160;", " ")
    # And it started one child per example service
    expected = len(demo_commands(settings, settings.effective_vhost))
    assert len(family) >= expected
    # And nothing it started is left running
    time.sleep(0.3)
    assert alive(family) == []


async def _queues(mgmt, vhost):  # type: ignore[no-untyped-def]
    return {q["name"] for q in await mgmt.queues(vhost, columns=("name",))}


@pytest.mark.timeout(90)
async def test_demo_declares_topology_and_stops_on_sigterm(settings, mgmt):
    # Given the demo running
    proc = run_demo(settings)
    family: list[psutil.Process] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        family = descendants(proc.pid) or family
        names = await _queues(mgmt, settings.effective_vhost)
        if names:
            break
        time.sleep(0.2)
    assert names, "the demo declared no queue"
    # When it gets SIGTERM
    time.sleep(1.0)
    family = descendants(proc.pid) or family
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    # Then it exits and leaves no process behind
    assert proc.returncode is not None
    time.sleep(0.3)
    assert alive(family) == []


def test_demo_children_never_get_the_password_on_their_command_line(base_settings):
    # Given settings whose AMQP URL carries a password
    from dataclasses import replace

    from queuewatch.cli.cmd_demo import demo_env

    s = replace(base_settings, amqp_url="amqp://demo:S3cretPw@127.0.0.1:5672/")
    # Then no child's argv shows it (ps would), and the children get it through the environment
    for _label, argv in demo_commands(s, "some-vhost"):
        assert not any("S3cretPw" in arg for arg in argv), argv
    assert demo_env(s)["QUEUEWATCH_AMQP_URL"] == s.amqp_url


def tmux_screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True, check=False).stdout


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_dev_demo_at_80x24_in_tmux_shows_state_heartbeat_and_help(settings, tmp_path):
    # Given `./dev demo` in a real 80x24 terminal (tmux) on this test's vhost
    session = f"qw-demo-{os.getpid()}"
    root = Path(__file__).resolve().parents[2]
    env = {"QUEUEWATCH_AMQP_URL": settings.amqp_url,
           "QUEUEWATCH_MANAGEMENT_URL": settings.management_url,
           "XDG_STATE_HOME": str(settings.state_dir)}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    done = tmp_path / "exit-code"
    command = (f"cd {shlex.quote(str(root))} && env {exports} ./dev demo --vhost "
               f"{shlex.quote(settings.effective_vhost)} --interval 1; echo $? > {done}")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command],
                   check=True)
    try:
        # When its workers have sent heartbeats and the Workers view is shown
        deadline = time.monotonic() + 90
        screen = ""
        while time.monotonic() < deadline:
            subprocess.run(["tmux", "send-keys", "-t", session, "2"], check=False)
            time.sleep(1.0)
            screen = tmux_screen(session)
            if "ok" in screen and "Heartbeat" in screen and "workers," in screen:
                break
        # Then the captured screen shows State, Heartbeat and the help key
        assert "State" in screen and "Heartbeat" in screen, screen
        assert "? Help" in screen and "q Quit" in screen, screen
        # And q quits within seconds, saying that it stops the services
        started = time.monotonic()
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        time.sleep(0.5)
        # (the demo may be done before the screen is read: its last words then, or, when its
        # tmux session already ended, nothing to read: the exit code below still counts)
        shown = tmux_screen(session)
        if shown.strip():
            assert "stopping" in shown or "demo stopped" in shown, shown
        while not done.exists() and time.monotonic() - started < 30:
            time.sleep(0.2)
        assert done.exists() and done.read_text().strip() == "0"
        assert time.monotonic() - started < 10
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)
