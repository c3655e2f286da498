"""``queuewatch demo``: a demo vhost with live producers and workers, and the console on it.

The example services in ``producers/`` and ``consumers/`` run as child processes, each in
its own process group, logging to ``<state_dir>/demo/``. Quitting the console (or SIGTERM,
SIGHUP, Ctrl+C) stops them all: SIGTERM to every group, SIGKILL to whatever is left after a
grace period. An ``atexit`` hook does the same if anything else ends the process.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any

from queuewatch.audit import AuditLog, require_writable
from queuewatch.cli.common import (
    add_connection_options,
    add_read_only_option,
    positive_float,
    settings_from_args,
)
from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError, ReadOnlyError

DEMO_VHOST = "queuewatch-demo"
#: Seconds children get between SIGTERM and SIGKILL.
STOP_GRACE = 5.0
#: Grace period when the operator quits the demo: its jobs are redelivered anyway.
QUIT_GRACE = 2.0
#: A child that dies on its own is restarted at most this many times.
MAX_RESTARTS = 3
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Child:
    label: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    log: IO[bytes] | None = field(default=None, repr=False)


class Supervisor:
    """Starts children in their own process groups, restarts crashed ones, stops them all."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = env
        self.children: list[Child] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def start(self, label: str, argv: list[str]) -> Child:
        child = Child(label, argv)
        self.children.append(child)
        self._spawn(child)
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="demo-supervisor", daemon=True)
            self._watcher.start()
        return child

    def _spawn(self, child: Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if child.log is None:
            child.log = (self.log_dir / f"{child.label}.log").open("ab")
        child.process = subprocess.Popen(
            child.argv, stdin=subprocess.DEVNULL, stdout=child.log, stderr=subprocess.STDOUT,
            start_new_session=True, env=self.env, cwd=ROOT,
        )

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            with self._lock:
                for child in self.children:
                    p = child.process
                    if p is None or p.poll() is None or self._stopping.is_set():
                        continue
                    if child.restarts < MAX_RESTARTS:
                        self._spawn(child)
                        child.restarts += 1

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process is not None]

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM every child's group, wait up to ``grace`` s, then SIGKILL. Idempotent."""
        self._stopping.set()
        with self._lock:
            running = [c.process for c in self.children if c.process and c.process.poll() is None]
            for p in running:
                _killpg(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for p in running:
                try:
                    p.wait(timeout=max(deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:
                    pass
            for c in self.children:
                if c.process is not None:
                    # The group may hold grandchildren even when the leader exited.
                    _killpg(c.process.pid, signal.SIGKILL)
                    if c.process.poll() is None:
                        c.process.wait(timeout=5)
                if c.log is not None:
                    c.log.close()
                    c.log = None


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def demo_commands(settings: Settings, vhost: str) -> list[tuple[str, list[str]]]:
    """The example services to run, as (label, argv); only scripts that exist."""
    # The AMQP URL (with its password) goes to the children through the environment
    # (demo_env), never on their command lines, where any local user could read it with ps.
    url = ["--vhost", vhost]
    wanted: list[tuple[str, Path, list[str]]] = [
        # steady traffic, and a burst every 20 s that runs into the orders cap
        ("producer", ROOT / "producers" / "demo_producer.py", ["--burst-every", "20"]),
        # failing emails (retries, the poison ones end in the DLQ), slow reports (stuck jobs)
        ("worker", ROOT / "consumers" / "demo_worker.py",
         ["--fail-ratio", "0.2", "--poison-ratio", "0.05", "--slow-ratio", "0.1"]),
    ]
    return [(label, [sys.executable, str(path), *url, *extra])
            for label, path, extra in wanted if path.is_file()]


def demo_env(settings: Settings) -> dict[str, str]:
    """The children's environment: ours plus the settings' URLs."""
    env = dict(os.environ)
    env["QUEUEWATCH_AMQP_URL"] = settings.amqp_url
    env["QUEUEWATCH_MANAGEMENT_URL"] = settings.management_url
    return env


def demo_topology_path() -> Path | None:
    for p in (ROOT / "consumers" / "demo_topology.toml", ROOT / "examples" / "topology.toml"):
        if p.is_file():
            return p
    return None


async def prepare(settings: Settings, vhost: str, reset: bool = False) -> int:
    """Create the demo vhost (if missing) and declare the demo topology; returns queue count.

    The default demo vhost belongs to the demo: if it holds an older demo topology (queue
    arguments differ), or ``reset`` is set, it is deleted and created afresh — never in
    read-only mode (:class:`ReadOnlyError`), and audited. Any other vhost is never deleted; a
    mismatch there is reported as the usual TopologyMismatch.
    """
    from queuewatch.broker.management import ManagementClient
    from queuewatch.errors import TopologyMismatch
    from queuewatch.topology import load_topology

    path = demo_topology_path()
    if reset and vhost == DEMO_VHOST:
        require_writable(settings, f"demo --reset (deletes the vhost {vhost!r})")
    async with ManagementClient(settings) as mgmt:
        await mgmt.check()
        if reset and vhost == DEMO_VHOST:
            await _delete_demo_vhost(settings, mgmt, vhost, "demo --reset")
        await mgmt.create_vhost(vhost)
        await mgmt.set_permissions(vhost, settings.credentials[0])
        if path is None:
            return 0
        topology = load_topology(path)
        try:
            await _declare(settings, vhost, topology, mgmt)
        except TopologyMismatch as exc:
            if vhost != DEMO_VHOST:
                raise
            if settings.read_only:
                raise ReadOnlyError(
                    f"demo: the vhost {vhost!r} holds queues that differ from the demo topology "
                    f"and resetting it deletes them ({exc.queue!r})") from None
            await _delete_demo_vhost(settings, mgmt, vhost, f"demo: queue {exc.queue!r} differed")
            await mgmt.create_vhost(vhost)
            await mgmt.set_permissions(vhost, settings.credentials[0])
            await _declare(settings, vhost, topology, mgmt)
        return len(topology.queues)


async def _delete_demo_vhost(settings: Settings, mgmt: Any, vhost: str, why: str) -> None:
    """Delete the demo vhost and every message in it: audited, like every destructive act."""
    audit = AuditLog.from_settings(settings)
    audit.check()  # before deleting: an action that cannot be audited is not done
    target = {"vhost": vhost}
    try:
        await mgmt.delete_vhost(vhost)
    except QueuewatchError as exc:
        audit.record("delete-vhost", target, "error", detail=f"{why}: {exc}")
        raise
    audit.record("delete-vhost", target, "ok", count=1, detail=why)


async def _declare(settings: Settings, vhost: str, topology: Any, mgmt: Any) -> None:
    from queuewatch.broker.connect import connect
    from queuewatch.broker.declare import declare_topology

    conn = await connect(settings, vhost)
    try:
        await declare_topology(conn, topology, vhost, mgmt)
    finally:
        await conn.close()


def demo_settings(settings: Settings) -> Settings:
    """Lower the lag thresholds so a few minutes of demo traffic raise alerts (demo only)."""
    t = settings.thresholds
    return replace(settings, thresholds=replace(
        t, oldest_age_warning=min(t.oldest_age_warning, 15.0),
        oldest_age_critical=min(t.oldest_age_critical, 45.0),
    ))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo", help="run example producers and workers in a demo vhost and open the console",
        description="Creates the vhost 'queuewatch-demo' (unless --vhost), declares the demo "
        "topology, starts the example producers and workers (with failures, slow jobs and a "
        "burst that hits a queue cap) and opens the console. Quitting stops every process.",
    )
    add_connection_options(p)
    add_read_only_option(p)
    p.add_argument("--exit-after", type=positive_float, metavar="SECONDS",
                   help="quit by itself after SECONDS (for scripts and tests)")
    p.add_argument("--headless", action="store_true", help="run the console without a terminal")
    p.add_argument("--screenshot", metavar="FILE.svg",
                   help="with --exit-after: save an SVG screenshot just before quitting")
    p.add_argument("--reset", action="store_true",
                   help=f"delete and recreate the {DEMO_VHOST!r} vhost first (a fresh demo)")
    p.add_argument("--interval", type=positive_float, default=2.0, metavar="SECONDS",
                   help="seconds between polls (default 2)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from queuewatch.cli.common import run
    from queuewatch.topology import load_topology
    from queuewatch.tui import make_app
    from queuewatch.tui.live import LiveSource

    settings = settings_from_args(args)
    vhost = getattr(args, "vhost", None) or DEMO_VHOST
    settings = demo_settings(settings.with_vhost(vhost))
    queues = run(lambda: prepare(settings, vhost, reset=args.reset))
    supervisor = Supervisor(settings.state_dir / "demo", env=demo_env(settings))
    atexit.register(supervisor.stop)
    path = demo_topology_path()
    source = LiveSource(settings, topology=load_topology(path) if path else None)
    app = make_app(settings, source, poll_interval=args.interval, exit_after=args.exit_after,
                   screenshot=args.screenshot)
    app.before_quit = lambda: supervisor.stop(grace=QUIT_GRACE)  # 'q': stop, on screen

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        supervisor.stop(grace=2.0)
        if app.is_running:
            app.exit(return_code=128 + signum)
        else:
            raise SystemExit(128 + signum)

    previous: dict[int, Any] = {
        s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        for label, argv in demo_commands(settings, vhost):
            supervisor.start(label, argv)
        app.run(headless=args.headless, size=(160, 45) if args.headless else None)
    finally:
        if any(c.process and c.process.poll() is None for c in supervisor.children):
            print(f"demo: stopping {len(supervisor.children)} services…", flush=True)
        supervisor.stop(grace=QUIT_GRACE)
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"demo stopped: {len(supervisor.children)} processes ended, {queues} queues in vhost "
          f"{vhost!r} (logs in {supervisor.log_dir})")
    return app.return_code or 0
