"""The monitoring commands' parsers and tables (no broker)."""

from __future__ import annotations

from queuewatch.cli.cmd_jobs import render_stuck
from queuewatch.cli.cmd_status import render_alerts, render_status
from queuewatch.cli.cmd_workers import cmd_workers_list
from queuewatch.cli.main import build_parser
from queuewatch.config import Thresholds
from queuewatch.monitor.alerts import build_alerts
from queuewatch.monitor.model import BrokerInfo, Snapshot
from queuewatch.monitor.queues import parse_queue

NOW = 1_700_000_000.0


def test_workers_defaults_to_list_and_keeps_options():
    parser = build_parser()
    bare = parser.parse_args(["workers", "--json"])
    listed = parser.parse_args(["workers", "list", "--json", "--listen", "0"])
    assert bare.func is cmd_workers_list and bare.json
    assert listed.func is cmd_workers_list and listed.json and listed.listen == 0
    assert parser.parse_args(["workers", "list"]).json is False
    assert parser.parse_args(["jobs", "stuck", "--json"]).json


def test_status_table_aligned_with_unknown_age():
    q1 = parse_queue({"name": "foreign", "vhost": "v", "messages_ready": 3}, NOW)
    q2 = parse_queue({"name": "jobs-with-a-long-name", "vhost": "v", "messages_ready": 12,
                      "head_message_timestamp": NOW - 90, "arguments": {"x-max-length": 24}}, NOW)
    snap = Snapshot(taken_at=NOW, vhost="v", broker=BrokerInfo(url="http://x"), queues=(q1, q2),
                    alerts=build_alerts([q1, q2], [], [], [], [], ["foreign"], Thresholds()))
    text = render_status(snap)
    lines = text.splitlines()
    header, row1, row2 = lines[1], lines[2], lines[3]
    assert "unknown" in row1 and "1m30s" in row2 and "50%" in row2
    # right-aligned numeric columns end at the same place as their header
    assert len(row1) == len(row2) == len(header)
    alerts = render_alerts(snap)
    assert "orphaned" in alerts and "oldest_age" in alerts
    assert render_stuck(snap).startswith("no stuck jobs")


def test_status_hides_queuewatchs_own_queues_unless_asked():
    names = ("jobs", "jobs.dlq", "queuewatch.delay.0", "queuewatch.due.jobs", "queuewatch.events",
             "amq.gen-x1")
    qs = tuple(parse_queue({"name": n, "vhost": "v", "messages_ready": 1}, NOW) for n in names)
    snap = Snapshot(taken_at=NOW, vhost="v", broker=BrokerInfo(url="http://x"), queues=qs)
    short = render_status(snap)
    assert "2 queues (4 internal hidden: --internal)" in short
    listed = [line.split()[0] for line in short.splitlines()[2:4]]
    assert listed == ["jobs", "jobs.dlq"] and "queuewatch.due.jobs" not in short
    full = render_status(snap, internal=True)
    assert "6 queues  " in full and all(n in full for n in names)
