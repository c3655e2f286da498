"""Make sure a usable RabbitMQ answers: the setup step behind ``./dev``.

Standard library only (it runs before anything else is certain). Idempotent and quiet:
when the broker, its plugins and the management API are already there it only looks
(a few HTTP/TCP probes) and changes nothing. Otherwise, on this machine only, it installs
``rabbitmq-server`` with apt, enables the plugins queuewatch needs, starts the broker and
waits until AMQP and the management API answer.

    python -m queuewatch.bootstrap [--prometheus] [--timeout 120]

Exit code 0 when ready, 2 with one line on stderr saying what is wrong otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit

PLUGINS = ("rabbitmq_management", "rabbitmq_prometheus", "rabbitmq_shovel", "rabbitmq_shovel_management")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


class SetupError(Exception):
    pass


def log(msg: str) -> None:
    print(f"setup: {msg}", file=sys.stderr, flush=True)


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def amqp_answers(host: str, port: int) -> bool:
    """True when an AMQP 0-9-1 server answers the protocol header with connection.start."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            sock.settimeout(3.0)
            data = sock.recv(8)
            return len(data) >= 1 and data[0] == 1  # frame type METHOD (connection.start)
    except OSError:
        return False


def http_get(url: str, user: str, password: str, timeout: float = 3.0) -> tuple[int, bytes]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    log(what)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise SetupError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))


def apt_install(*packages: str) -> None:
    if shutil.which("apt-get") is None:
        raise SetupError(f"{', '.join(packages)} missing and there is no apt-get; install by hand")
    if os.geteuid() != 0:
        sudo = ["sudo", "-n"] if shutil.which("sudo") else None
        if sudo is None:
            raise SetupError(f"installing {', '.join(packages)} needs root; run as root or install by hand")
    else:
        sudo = []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run([*sudo, "apt-get", "update", "-qq"], "apt-get update", env)
    run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        f"apt-get install {' '.join(packages)}", env)


def wait_for(check, what: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    raise SetupError(f"timed out after {timeout:.0f}s waiting for {what}")


def ensure_broker(amqp_url: str, mgmt_url: str, timeout: float) -> list[str]:
    """Return the list of things done (empty when nothing was needed)."""
    done: list[str] = []
    a = urlsplit(amqp_url)
    host, port = a.hostname or "127.0.0.1", a.port or 5672
    user, password = unquote(a.username or "guest"), unquote(a.password or "guest")
    m = urlsplit(mgmt_url)
    mhost = m.hostname or host
    base = mgmt_url.rstrip("/")
    local = host in LOCAL_HOSTS

    def mgmt_ok() -> bool:
        return http_get(f"{base}/api/overview", user, password)[0] == 200

    def shovel_ok() -> bool:
        return http_get(f"{base}/api/shovels", user, password)[0] == 200

    def prom_ok() -> bool:
        return tcp_open(mhost, 15692)

    if amqp_answers(host, port) and mgmt_ok() and shovel_ok() and (not local or prom_ok()):
        return done
    if not local:
        if not amqp_answers(host, port):
            raise SetupError(f"no AMQP broker answers at {host}:{port}; start it or set QUEUEWATCH_AMQP_URL")
        raise SetupError(
            f"the management API at {base} does not answer (or lacks the shovel plugin); enable "
            f"{', '.join(PLUGINS)} on that broker"
        )

    if shutil.which("rabbitmq-server") is None and not os.path.exists("/usr/sbin/rabbitmq-server"):
        apt_install("rabbitmq-server")
        done.append("installed rabbitmq-server")
    plugins_cmd = shutil.which("rabbitmq-plugins") or "/usr/sbin/rabbitmq-plugins"
    if not amqp_answers(host, port):
        run([plugins_cmd, "enable", "--offline", *PLUGINS], "enabling plugins (offline)")
        done.append("enabled plugins")
        server = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"
        run([server, "-detached"], "starting rabbitmq-server")
        done.append("started rabbitmq-server")
        wait_for(lambda: amqp_answers(host, port), f"AMQP at {host}:{port}", timeout)
    if not (mgmt_ok() and shovel_ok() and prom_ok()):
        run([plugins_cmd, "enable", *PLUGINS], "enabling plugins")
        done.append("enabled plugins")
    wait_for(mgmt_ok, f"the management API at {base}", timeout)
    wait_for(shovel_ok, "the shovel management API", timeout)
    return done


def ensure_prometheus() -> list[str]:
    if shutil.which("promtool") and shutil.which("prometheus"):
        return []
    apt_install("prometheus")
    return ["installed prometheus"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m queuewatch.bootstrap", description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", action="store_true", help="also install Debian's prometheus (promtool)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the broker")
    args = parser.parse_args(argv)
    amqp_url = os.environ.get("QUEUEWATCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    mgmt_url = os.environ.get("QUEUEWATCH_MANAGEMENT_URL", "http://127.0.0.1:15672")
    try:
        done = ensure_broker(amqp_url, mgmt_url, args.timeout)
        if args.prometheus:
            done += ensure_prometheus()
    except SetupError as exc:
        print(f"setup: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"changed": done}) if done else "setup: broker ready, nothing to do", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
