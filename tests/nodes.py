"""Throwaway RabbitMQ nodes for the slow tier: own name, ports, data dir, cookie; stopped by pid.

A node started here never touches the machine's own broker: it has its own node name
(``qwt-<hex>@localhost``), AMQP port, distribution port, optional management port, data and
log directories, and its own Erlang cookie under its own ``HOME`` (``base_dir/home``), which
``rabbitmqctl`` for that node is given too. It runs in its own process group
(``start_new_session=True``) and is stopped through its own pid or group only. epmd is
shared by every node on the machine, the machine's broker included, and is never signalled::

    node = start_node(tmp_path, management=True, config_extra="consumer_timeout = 10000")
    try:
        ...connect to node.amqp_url / node.management_url...
        node.kill9(); node.restart()
    finally:
        node.close()

The ``throwaway_node`` fixture (registered in ``tests/conftest.py``) wraps that for a test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from queuewatch.config import Settings
    from queuewatch.topology import Topology

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
#: Seconds a node gets to boot (a 2-core machine running three nodes at once is slow).
START_TIMEOUT = 90.0
#: Seconds a graceful stop may take before the process group is killed.
STOP_TIMEOUT = 30.0
#: Processes of a node's group that are shared with every other node: never signalled.
SHARED_PROCESSES = frozenset({"epmd"})


def rabbitmq_installed() -> bool:
    return (RABBITMQ_BIN / "rabbitmq-server").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def write_cookie(home: Path, cookie: str) -> None:
    """The Erlang cookie file in ``home`` (Erlang insists on mode 0400)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / ".erlang.cookie"
    if path.exists():
        path.chmod(0o600)
    path.write_text(cookie)
    path.chmod(0o400)


@dataclass
class Node:
    """One RabbitMQ node of ours. ``proc`` is None while it is not running."""

    name: str
    base: Path
    home: Path
    """Holds ``.erlang.cookie``; HOME for the server and for ``rabbitmqctl``."""
    port: int
    dist_port: int
    management_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)
    log_files: list[Path] = field(default_factory=list, repr=False)

    # -- addresses ------------------------------------------------------------------------
    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_url(self) -> str:
        if self.management_port is None:
            raise ValueError(f"{self.name} was started without the management plugin")
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    # -- life -----------------------------------------------------------------------------
    def start(self) -> None:
        """Launch the server (returns at once; see :meth:`wait_up`)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        log = (self.base / "server.out").open("ab")
        try:
            self.proc = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env, cwd=self.base,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def is_up(self) -> bool:
        """AMQP accepts connections (and, with management, the HTTP API answers)."""
        if self.proc is None or self.proc.poll() is not None or not port_open(self.port):
            return False
        if self.management_port is None:
            return True
        try:
            with urllib.request.urlopen(f"{self.management_url}/api/overview", timeout=2):
                pass  # guest/guest is not needed for the 401 a live API answers with
            return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            return False

    def wait_up(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_up():
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"RabbitMQ node {self.name} exited while starting: {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"RabbitMQ node {self.name} not up after {timeout:g}s: {self.tail()}")
            time.sleep(0.25)

    def kill9(self) -> None:
        """SIGKILL every process of the node's own process group except shared ones (epmd)."""
        if self.proc is None:
            return
        leader = self.proc.pid  # start_new_session: the server script leads its own group
        # the VM and its helpers first, then the script that waits for them (so it reaps them)
        members = [pid for pid in _group_members(leader) if pid != leader]
        for pid in [*members, leader]:
            if _comm(pid) not in SHARED_PROCESSES:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        # SIGKILL is asynchronous: a killed VM's threads take a moment to exit, and its
        # listening sockets stay open until the last one has
        deadline = time.monotonic() + 15
        while port_open(self.port) or any(_running(pid) for pid in _group_members(leader)
                                          if _comm(pid) not in SHARED_PROCESSES):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {self.name} survived SIGKILL")
            time.sleep(0.05)
        self.proc = None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop gracefully (SIGTERM to our own server pid), SIGKILL the group after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill9()  # leftovers of the group (erl_child_setup, inet_gethost), never epmd

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Start again with the same name, ports and data directory (after a stop or kill9)."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.proc = None
        self.start()
        self.wait_up(timeout)

    def close(self) -> None:
        """Stop and remove the node's files."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- CLI --------------------------------------------------------------------------------
    def ctl(self, *args: str, timeout: float = 60, tool: str = "rabbitmqctl") -> str:
        """``rabbitmqctl -n <this node> ...`` (our cookie, our node only); its stdout."""
        done = subprocess.run(
            [str(RABBITMQ_BIN / tool), "-n", self.name, *args], env=self.ctl_env(),
            capture_output=True, text=True, timeout=timeout,
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
        return done.stdout

    def eval(self, expr: str, timeout: float = 30) -> str:
        """Evaluate an Erlang expression on this node (``rabbitmqctl eval``)."""
        return self.ctl("eval", expr, timeout=timeout).strip()

    def ctl_env(self) -> dict[str, str]:
        return dict(os.environ, HOME=str(self.home))

    def tail(self, lines: int = 15) -> str:
        """The end of the node's logs, for failure messages."""
        out = []
        for path in [self.base / "server.out", *sorted((self.base / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out[-lines:]) or f"(no log in {self.base})"


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
    return members


def live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that have not exited (zombies awaiting reaping excluded)."""
    return [pid for pid in _group_members(pgid) if _running(pid)]


def _running(pid: int) -> bool:
    """True while any thread of ``pid`` has not exited (a zombie leader whose other threads
    are still exiting counts as running)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" or len(tasks) > 1


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def prepare_node(
    base_dir: Path,
    *,
    management: bool = False,
    plugins: tuple[str, ...] = (),
    config_extra: str = "",
    cookie: str | None = None,
    name: str | None = None,
    home: Path | None = None,
) -> Node:
    """Lay out a node's files and environment under ``base_dir/<name>`` without starting it."""
    if not rabbitmq_installed():
        raise RuntimeError(f"rabbitmq-server is not installed in {RABBITMQ_BIN}")
    short = name or f"qwt-{secrets.token_hex(4)}"
    node_name = short if "@" in short else f"{short}@localhost"
    base = Path(base_dir) / node_name.split("@")[0]
    base.mkdir(parents=True, exist_ok=True)
    home = home or base / "home"
    if not (home / ".erlang.cookie").exists() or cookie is not None:
        write_cookie(home, cookie or secrets.token_hex(16).upper())
    port, dist_port = free_port(), free_port()
    mgmt_port = free_port() if management else None
    enabled = (["rabbitmq_management"] if management else []) + list(plugins)
    (base / "enabled_plugins").write_text(f"[{','.join(enabled)}].\n")
    conf = [f"listeners.tcp.default = {port}", "loopback_users = none",
            "log.console = false", "log.file.level = info"]
    if mgmt_port is not None:
        conf += [f"management.tcp.port = {mgmt_port}", "management.tcp.ip = 127.0.0.1"]
    (base / "rabbitmq.conf").write_text("\n".join(conf) + "\n" + config_extra.strip() + "\n")
    env = dict(
        os.environ, HOME=str(home),
        RABBITMQ_NODENAME=node_name, RABBITMQ_NODE_PORT=str(port),
        RABBITMQ_DIST_PORT=str(dist_port), RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
        RABBITMQ_LOG_BASE=str(base / "log"), RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
        RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"), RABBITMQ_FEATURE_FLAGS_FILE=str(base / "ff"),
        RABBITMQ_PLUGINS_EXPAND_DIR=str(base / "expand"), RABBITMQ_PID_FILE=str(base / "pid"),
        RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
        RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
    )
    env.pop("RABBITMQ_ERLANG_COOKIE", None)
    return Node(node_name, base, home, port, dist_port, mgmt_port, env=env)


def start_node(
    base_dir: Path,
    *,
    management: bool = False,
    plugins: tuple[str, ...] = (),
    config_extra: str = "",
    cookie: str | None = None,
    name: str | None = None,
    timeout: float = START_TIMEOUT,
) -> Node:
    """Start one throwaway node and wait until it accepts connections.

    ``plugins``: more plugins to enable (e.g. ``rabbitmq_shovel``); ``config_extra``: more
    ``rabbitmq.conf`` lines (e.g. ``consumer_timeout = 10000``).
    ``cookie``: its Erlang cookie (default: a random one); ``name``: its node name
    (default ``qwt-<hex>@localhost``).
    """
    node = prepare_node(base_dir, management=management, plugins=plugins, config_extra=config_extra,
                        cookie=cookie, name=name)
    node.start()
    try:
        node.wait_up(timeout)
    except BaseException:
        node.close()
        raise
    return node


@contextlib.contextmanager
def running_node(base_dir: Path, **kwargs: object) -> Iterator[Node]:
    """:func:`start_node` for a ``with`` block: the node is stopped and removed on exit."""
    node = start_node(base_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def throwaway_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A plain throwaway node (AMQP only) for one test, stopped and removed afterwards."""
    if not rabbitmq_installed():
        pytest.skip("rabbitmq-server is not installed here")
    with running_node(tmp_path_factory.mktemp("rmq")) as node:
        yield node




async def jobs_on(node: Node, state_dir: Path) -> tuple[Settings, Topology]:
    """Settings for ``node`` (vhost "/"), with queue "jobs" declared on it."""
    from dataclasses import replace

    from queuewatch.broker.connect import connect
    from queuewatch.broker.declare import declare_topology
    from queuewatch.config import load_settings
    from queuewatch.topology import QueueSpec, Topology

    settings = replace(load_settings(env={}, amqp_url=node.amqp_url, vhost="/"), state_dir=state_dir)
    topo = Topology(queues=(QueueSpec("jobs"),), delay_levels=1)
    conn = await connect(settings)
    await declare_topology(conn, topo, "/")
    await conn.close()
    return settings, topo
