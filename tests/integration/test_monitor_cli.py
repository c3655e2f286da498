"""The monitoring CLI on a real broker: JSON fields, tables, --watch, and clear failures."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest

from queuewatch.cli.main import main

#: The documented ``status --json`` queue fields (docs/monitoring.md); adding is fine, renaming not.
QUEUE_FIELDS = {
    "vhost", "name", "type", "state", "ready", "unacked", "total", "consumers",
    "consumer_utilisation", "publish_rate", "deliver_rate", "ack_rate", "redeliver_rate",
    "no_ack_rate", "net_rate", "message_bytes", "max_length", "max_length_bytes", "fill_ratio",
    "oldest_age_seconds", "oldest_age_known", "oldest_age_text", "drain_eta_seconds",
    "drain_eta_text", "full_eta_seconds", "full_eta_text", "is_dlq", "dlq", "dlq_depth",
    "dlq_growth", "stuck_after_seconds", "down", "down_reason", "node", "leader", "members",
    "online", "paused", "rate_limit", "scheduled",
}
TOP_FIELDS = {"schema", "taken_at", "vhost", "poll_seconds", "broker", "nodes", "nodes_hidden",
              "queues", "workers", "stuck_jobs", "stalled_queues", "orphaned_queues", "alerts",
              "heartbeats"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def foreign_queue(settings) -> str:  # type: ignore[no-untyped-def]
    """A queue as a plain pika service makes it: no queuewatch arguments, no timestamps."""
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url_for()))
    ch = conn.channel()
    ch.queue_declare("legacy", durable=True)
    for _ in range(4):
        ch.basic_publish("", "legacy", b"{}")
    conn.close()
    return "legacy"


def _wait_depth(vhost: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    import time

    deadline = time.monotonic() + 20
    while True:
        assert main(["status", "--json", "--vhost", vhost, "--no-heartbeats"]) == 0
        doc = json.loads(capsys.readouterr().out)
        q = {x["name"]: x for x in doc["queues"]}.get("legacy")
        if (q and q["ready"] == 4) or time.monotonic() > deadline:
            return doc
        time.sleep(0.5)


def test_status_json_fields_and_table(settings, vhost, foreign_queue, capsys):
    # Given a foreign queue with 4 unstamped messages, once the stats show them
    doc = _wait_depth(vhost, capsys)
    # Then --json has the documented fields, and says the age is unknown
    assert set(doc) == TOP_FIELDS
    legacy = {x["name"]: x for x in doc["queues"]}["legacy"]
    assert set(legacy) == QUEUE_FIELDS
    assert legacy["ready"] == 4 and legacy["oldest_age_seconds"] is None
    assert legacy["oldest_age_text"] == "unknown" and legacy["oldest_age_known"] is False
    assert doc["orphaned_queues"] == ["legacy"]
    # and the table for people says "unknown" in the OLDEST column
    assert main(["status", "--vhost", vhost, "--no-heartbeats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[1].split()
    row = next(line.split() for line in lines if line.startswith("legacy"))
    assert row[header.index("OLDEST")] == "unknown" and row[header.index("READY")] == "4"
    # alerts lists it as orphaned, and --check fails
    assert main(["alerts", "--vhost", vhost, "--no-heartbeats", "--check"]) == 1
    assert "orphaned" in capsys.readouterr().out


def test_status_watch_reprints_and_warns_below_stats_interval(vhost, capsys):
    # When watching 2 snapshots at a 0.2 s interval
    rc = main(["status", "--watch", "--interval", "0.2", "--count", "2", "--json",
               "--vhost", vhost, "--no-heartbeats"])
    out = capsys.readouterr()
    # Then two documents were printed and a warning about the broker's 5 s stats interval
    assert rc == 0
    assert out.out.count('"schema": 1') == 2
    assert "statistics interval" in out.err


def test_wrong_password_is_one_line_and_exit_2(settings, vhost, monkeypatch, capsys):
    parts = urlsplit(settings.amqp_url)
    bad = urlunsplit((parts.scheme, f"{parts.username}:not-the-password@{parts.hostname}:"
                      f"{parts.port or 5672}", "/", "", ""))
    monkeypatch.setenv("QUEUEWATCH_AMQP_URL", bad)
    for argv in (["status", "--vhost", vhost], ["workers", "--vhost", vhost],
                 ["jobs", "stuck", "--vhost", vhost], ["alerts", "--vhost", vhost]):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, argv
        assert err.count("\n") == 1 and "refused the credentials" in err, err
        assert "not-the-password" not in err


def test_management_api_down_is_one_line_and_exit_2(vhost, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    rc = main(["status", "--vhost", vhost, "--management-url", url, "--no-heartbeats"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "cannot reach the management API" in err
