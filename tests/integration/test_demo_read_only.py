"""Read-only means read-only for the demo too: its reset, and the reset it does on its own
when the demo vhost holds queues with other arguments, delete nothing in read-only mode;
when they do delete, the audit log says so."""

from __future__ import annotations

import os
import stat
from dataclasses import replace

import pytest

from queuewatch.audit import AuditLog
from queuewatch.broker.management import q
from queuewatch.cli import cmd_demo
from queuewatch.errors import ReadOnlyError
from tests.cli_helpers import assert_one_line_error, qw


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["demo", "--read-only", "--reset"], {}),
        (["demo", "--reset"], {"QUEUEWATCH_READ_ONLY": "1"}),
        (["demo", "--reset"], {"QUEUEWATCH_READ_ONLY": "true"}),
    ],
)
def test_demo_reset_is_refused_in_read_only_mode_before_touching_the_broker(args, env, tmp_path):
    # Given a management URL where nothing listens: a refusal that came after any broker
    # call would say "cannot reach" instead
    env = {**env, "QUEUEWATCH_MANAGEMENT_URL": "http://127.0.0.1:1", "QUEUEWATCH_STATE_DIR": str(tmp_path)}
    proc = qw(*args, "--headless", "--exit-after", "1", env=env, timeout=60)
    assert_one_line_error(proc, "read-only mode")
    assert "demo --reset" in proc.stderr
    assert not (tmp_path / "audit.jsonl").exists()  # nothing done, nothing audited


async def _queue_with_other_arguments(settings, mgmt) -> str:
    """The first queue of the demo topology, declared in the test vhost with other arguments."""
    from queuewatch.topology import load_topology

    path = cmd_demo.demo_topology_path()
    assert path is not None
    name = load_topology(path).queues[0].name
    await mgmt.request("PUT", f"/queues/{q(settings.vhost)}/{q(name)}",
                       json={"durable": True, "arguments": {"x-max-length": 7}})
    return name


async def test_read_only_demo_does_not_delete_a_vhost_whose_queues_differ(settings, mgmt, monkeypatch):
    # Given the demo's own vhost (here the test's vhost, standing in for it) holding a
    # queue of the demo topology declared with other arguments, and a message in it
    monkeypatch.setattr(cmd_demo, "DEMO_VHOST", settings.vhost)
    name = await _queue_with_other_arguments(settings, mgmt)
    await mgmt.request("POST", f"/exchanges/{q(settings.vhost)}/amq.default/publish", json={
        "properties": {}, "routing_key": name, "payload": "keep me", "payload_encoding": "string"})
    read_only = replace(settings, read_only=True)
    # When the demo prepares it in read-only mode
    with pytest.raises(ReadOnlyError, match="differ from the demo topology"):
        await cmd_demo.prepare(read_only, settings.vhost)
    # Then the vhost, the queue and its message are all still there, and nothing was audited
    info = await mgmt.queue(settings.vhost, name)
    assert info is not None and info["arguments"] == {"x-max-length": 7}
    assert AuditLog.from_settings(settings).read() == []


async def test_demo_reset_and_its_own_reset_are_audited(settings, mgmt, monkeypatch):
    monkeypatch.setattr(cmd_demo, "DEMO_VHOST", settings.vhost)
    await _queue_with_other_arguments(settings, mgmt)
    # When the demo (not read-only) finds the differing queue, then is reset on purpose
    await cmd_demo.prepare(settings, settings.vhost)
    await cmd_demo.prepare(settings, settings.vhost, reset=True)
    # Then both deletions are in the audit log, which is 0600 and hash-chained
    entries = AuditLog.from_settings(settings).read()
    assert [(e["action"], e["target"], e["outcome"]) for e in entries] == [
        ("delete-vhost", {"vhost": settings.vhost}, "ok")] * 2
    assert "differed" in entries[0]["detail"] and entries[1]["detail"] == "demo --reset"
    mode = stat.S_IMODE(os.stat(settings.audit_log_path).st_mode)
    assert mode == 0o600
