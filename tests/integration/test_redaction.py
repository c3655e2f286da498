"""No secret in any output: several commands run with a password in the URL (on the command
line, in the environment, in a config file, percent-encoded or not) and everything they
write — stdout, stderr, logs, the audit log, exports — is grepped for it."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from tests.cli_helpers import ROOT, qw
from tests.nodes import free_port

SECRET = f"S3cr3t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def user(admin_http: httpx.Client, vhost: str) -> Iterator[str]:
    """A broker user whose password is SECRET, with full rights on the test's vhost (an
    administrator: the demo creates its vhost and sets its own permissions)."""
    name = f"qwt-redact-{uuid.uuid4().hex[:6]}"
    admin_http.put(f"/users/{quote(name, safe='')}", json={"password": SECRET, "tags": "administrator"}
                   ).raise_for_status()
    admin_http.put(f"/permissions/{quote(vhost, safe='')}/{quote(name, safe='')}",
                   json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    yield name
    admin_http.delete(f"/users/{quote(name, safe='')}")


def _run_for(seconds: float, args: list[str], env: dict[str, str], fetch: str | None = None) -> str:
    """A long-running command for ``seconds`` (then ``fetch`` an URL from it), then SIGTERM:
    its stdout and stderr (and what the URL answered)."""
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    full_env.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "queuewatch.cli.main", *args], cwd=ROOT,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(seconds)
    fetched = ""
    deadline = time.monotonic() + 90  # a loaded machine: the exporter may take a while to listen
    while fetch is not None and not fetched:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(fetch, timeout=30) as resp:
                fetched = resp.read().decode()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.5)
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out + fetched


def _children_cmdlines(args: list[str], env: dict[str, str]) -> str:
    """Start ``queuewatch ARGS``, wait for its children, stop it: their command lines."""
    import os

    import psutil

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEWATCH_")}
    full_env.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "queuewatch.cli.main", *args], cwd=ROOT,
                            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not lines:
            children = psutil.Process(proc.pid).children()
            lines = [" ".join(c.cmdline()) for c in children if "worker" in " ".join(c.cmdline())]
            time.sleep(0.2)
        assert lines, "no worker child started"
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.timeout(600)  # some 15 processes in turn: 40 s alone, minutes on a loaded machine
def test_no_command_writes_the_password(user, vhost, tmp_path, admin_http):
    state = tmp_path / "state"
    good = f"amqp://{user}:{SECRET}@127.0.0.1:5672/{quote(vhost, safe='')}"
    refused = f"amqp://{user}:{SECRET}@127.0.0.1:1/"
    env = {"QUEUEWATCH_STATE_DIR": str(state)}
    outputs: list[str] = []

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = qw(*args, env={**env, **(extra or {})}, timeout=90)
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    # Given a topology declared and a dead letter in its DLQ, through a URL on the command line
    topo = ROOT / "examples" / "topology.toml"
    assert run("declare", str(topo), "--amqp-url", good).returncode == 0, outputs
    assert run("status", "--json", "--amqp-url", good).returncode == 0, outputs
    dlq = "emails.dlq" if "emails" in topo.read_text() else None
    if dlq is not None:
        run("dlq", "list", dlq, extra={"QUEUEWATCH_AMQP_URL": good})
        # a destructive action: audited
        run("dlq", "purge", dlq, "--yes", extra={"QUEUEWATCH_AMQP_URL": good})
        run("dlq", "export", dlq, str(tmp_path / "export.jsonl"), extra={"QUEUEWATCH_AMQP_URL": good})
    # and failures that quote the URL: a refused port, a broken URL, a wrong password in a file
    run("status", extra={"QUEUEWATCH_AMQP_URL": refused})
    run("workers", "--amqp-url", f"amqp://{user}:{SECRET}/x@127.0.0.1/")
    run("status", extra={"QUEUEWATCH_AMQP_URL": f"amqp://{user}:{quote(SECRET + '/x', safe='')}@127.0.0.1:1/"})
    cfg = tmp_path / "qw.toml"
    cfg.write_text(f'amqp_url = "amqp://{user}:{SECRET}@127.0.0.1:5672/nope"\n'
                   f'management_password = "{SECRET}"\nhttp_timeout = "x"\n')
    run("status", "--config", str(cfg))
    cfg.write_text(f'amqp_url = "amqp://{user}:{SECRET}@127.0.0.1:5672/nope"\n')
    run("status", "--no-heartbeats", "--config", str(cfg))
    # and long-running commands, which log: a worker and the exporter on a refused port
    outputs.append(_run_for(4, ["worker", "consumers/email_worker.py:make_worker", "-v"],
                            {**env, "QUEUEWATCH_AMQP_URL": refused}))
    outputs.append(_run_for(4, ["exporter", "--port", "0"], {**env, "QUEUEWATCH_AMQP_URL": refused}))
    # and the exporter's metrics on a working URL
    port = free_port()
    metrics = _run_for(6, ["exporter", "--port", str(port), "--all-vhosts"],
                       {**env, "QUEUEWATCH_AMQP_URL": good}, fetch=f"http://127.0.0.1:{port}/metrics")
    assert "queuewatch_up" in metrics
    outputs.append(metrics)

    # and supervised worker processes: the URL given on the parent's command line must not
    # be on its children's (any local user reads them in ps)
    outputs.append(_children_cmdlines(["worker", "consumers/email_worker.py:make_worker", "--processes",
                                       "2", "--amqp-url", good], env))
    # and the demo on a vhost of its own (it creates it): producer and worker children
    # (their logs), the console, its SVG screenshot
    shot, demo_vhost = tmp_path / "demo.svg", f"{vhost}-demo"
    try:
        demo = run("demo", "--headless", "--vhost", demo_vhost, "--interval", "0.5", "--exit-after",
                   "6", "--screenshot", str(shot), extra={"QUEUEWATCH_AMQP_URL": good})
    finally:
        admin_http.delete(f"/vhosts/{quote(demo_vhost, safe='')}")
    assert demo.returncode == 0, demo.stderr
    assert shot.is_file() and list((state / "demo").glob("*.log"))

    # Then the secret appears nowhere: not in any output, not in any file written
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "qw.toml"]
    assert (state / "audit.jsonl") in written or dlq is None
    for text in outputs + [p.read_text(errors="replace") for p in written]:
        assert SECRET not in text, text[:3000]
        assert quote(SECRET, safe="") not in text
    joined = "\n".join(outputs)
    assert "***" in joined  # the URLs were shown, masked
    assert "cannot connect to RabbitMQ" in joined


