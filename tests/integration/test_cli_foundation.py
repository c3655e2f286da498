"""The CLI on bad input and broken brokers: one clear line, exit code 2, no traceback,
never a password. And `queuewatch declare` for real."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from queuewatch.broker.management import q
from tests.cli_helpers import assert_one_line_error, qw

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def not_management() -> str:
    """An HTTP server that is not the RabbitMQ management API (404 everywhere)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_declare_creates_then_changes_nothing(vhost, tmp_path):
    topo = tmp_path / "t.toml"
    topo.write_text('delay_levels = 3\n[[queue]]\nname = "jobs"\nmax_length = 5\n')
    first = qw("declare", str(topo), "--vhost", vhost)
    assert first.returncode == 0, first.stderr
    assert "6 created, 0 unchanged" in first.stdout  # 3 levels, jobs, jobs.dlq, its due queue
    assert "+ queuewatch.due.jobs" in first.stdout
    second = qw("declare", str(topo), "--vhost", vhost)
    assert "0 created, 6 unchanged" in second.stdout


def test_declare_mismatch_is_one_line(vhost, tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('delay_levels = 2\n[[queue]]\nname = "jobs"\nmax_length = 5\n')
    b.write_text('delay_levels = 2\n[[queue]]\nname = "jobs"\nmax_length = 6\n')
    assert qw("declare", str(a), "--vhost", vhost).returncode == 0
    proc = qw("declare", str(b), "--vhost", vhost)
    assert_one_line_error(proc, "x-max-length: current=5 requested=6")


@pytest.mark.parametrize("other", [2, 5])
def test_declare_with_another_number_of_delay_levels_is_refused(vhost, tmp_path, admin_http, other):
    # Given a vhost declared with 3 delay levels
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('delay_levels = 3\n[[queue]]\nname = "jobs"\n')
    b.write_text(f'delay_levels = {other}\n[[queue]]\nname = "jobs"\n')
    assert qw("declare", str(a), "--vhost", vhost).returncode == 0
    # When a topology with fewer or more levels is declared over it: refused, one line
    proc = qw("declare", str(b), "--vhost", vhost)
    assert_one_line_error(proc, f"has 3 delay levels (queuewatch.delay.0 to queuewatch.delay.2) "
                                f"and the topology asks for {other}")
    # And nothing was declared: no bindings of a second set (a delayed message would be
    # routed once by each set), no level beyond the 3
    bindings = admin_http.get(f"/bindings/{q(vhost)}").json()
    keys = {(b["source"], b["routing_key"]) for b in bindings
            if b["source"].startswith("queuewatch.delay.")}
    assert keys == {("queuewatch.delay.2", "1.#"), ("queuewatch.delay.2", "0.#"),
                    ("queuewatch.delay.1", "*.1.#"), ("queuewatch.delay.1", "*.0.#"),
                    ("queuewatch.delay.0", "*.*.1.#"), ("queuewatch.delay.0", "*.*.0.#")}, keys
    names = {e["name"] for e in admin_http.get(f"/exchanges/{q(vhost)}").json()}
    assert "queuewatch.delay.3" not in names


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "does not exist"),
        ("[[queue]\n", "is not valid TOML"),
        ('[[queue]]\nname = "q"\nspeed = 3\n', "unknown key(s) speed"),
        ('[[queue]]\nname = "q"\nmax_priority = -1\n', "must not be negative"),
        ('[[queue]]\nname = "q"\nmax_length = -10\n', "must not be negative"),
    ],
)
def test_bad_topology_files(tmp_path, content, fragment):
    path = tmp_path / "topo.toml"
    if content is not None:
        path.write_text(content)
    assert_one_line_error(qw("declare", str(path)), fragment)


def test_bad_config_file(tmp_path):
    cfg = tmp_path / "qw.toml"
    cfg.write_text("colour = 'blue'\n")
    topo = ROOT / "examples" / "topology.toml"
    assert_one_line_error(qw("declare", str(topo), "--config", str(cfg)), "unknown key 'colour'")


def test_refused_credentials_never_echo_the_password():
    topo = ROOT / "examples" / "topology.toml"
    proc = qw("declare", str(topo), "--amqp-url", "amqp://guest:Wr0ngPass@127.0.0.1:5672/")
    assert_one_line_error(proc, "refused the credentials")
    assert "Wr0ngPass" not in proc.stderr + proc.stdout


def test_management_not_enabled(not_management):
    topo = ROOT / "examples" / "topology.toml"
    proc = qw("declare", str(topo), "--management-url", not_management)
    assert_one_line_error(proc, "rabbitmq-plugins enable rabbitmq_management")


def test_nothing_listening():
    topo = ROOT / "examples" / "topology.toml"
    port = free_port()
    proc = qw("declare", str(topo), "--management-url", f"http://127.0.0.1:{port}")
    assert_one_line_error(proc, "cannot reach the management API")


def test_setup_twice_changes_nothing_the_second_time():
    # Given a set-up machine (the first run makes sure of it)
    first = subprocess.run([str(ROOT / "scripts" / "setup")], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    stamp = ROOT / ".venv" / ".queuewatch-installed"
    before = (stamp.read_text(), stamp.stat().st_mtime_ns)
    plugins = Path("/etc/rabbitmq/enabled_plugins")
    plugins_before = plugins.read_text() if plugins.exists() else None
    # When it runs again
    second = subprocess.run([str(ROOT / "scripts" / "setup")], capture_output=True, text=True, timeout=120)
    # Then it did nothing and said so
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stderr and "installing" not in second.stderr
    assert (stamp.read_text(), stamp.stat().st_mtime_ns) == before
    assert (plugins.read_text() if plugins.exists() else None) == plugins_before
