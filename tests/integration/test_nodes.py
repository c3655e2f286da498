"""The throwaway-node helper itself: its own config, management port and cookie; kill -9 and
restart keep its data and never touch the shared epmd; close leaves no process behind."""

from __future__ import annotations

import subprocess
import time

import httpx
import pika
import pika.exceptions
import psutil
import pytest

from tests.nodes import live_group_members, port_open, rabbitmq_installed, running_node

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not rabbitmq_installed(), reason="rabbitmq-server is not installed here"),
]


EPMD_PORT = 4369


def epmd_pids() -> set[int]:
    done = subprocess.run(["pgrep", "-x", "epmd"], capture_output=True, text=True)
    return {int(p) for p in done.stdout.split()}


def resident_epmd(min_age: float = 10.0) -> set[int]:
    """The epmd daemons that stay: an ``epmd -daemon`` another test's node start runs exits
    soon when one is already there, but under load it may live for more than a second (seen:
    two such pids in two snapshots a second apart, gone at the check). The resident one is old."""
    now = time.time()
    old = set()
    for pid in epmd_pids():
        try:
            if now - psutil.Process(pid).create_time() >= min_age:
                old.add(pid)
        except psutil.NoSuchProcess:
            continue
    return old


def group_alive(pgid: int) -> bool:
    return bool(live_group_members(pgid))


def test_node_config_kill9_restart_and_close(tmp_path):
    epmd_before = resident_epmd()
    with running_node(tmp_path, management=True, config_extra="consumer_timeout = 10000") as node:
        # Given a node of our own: its config applies, its management API answers as itself
        assert node.eval("application:get_env(rabbit, consumer_timeout).") == "{ok,10000}"
        overview = httpx.get(f"{node.management_url}/api/overview", auth=("guest", "guest"),
                             params={"columns": "node"}, timeout=10).json()
        assert overview["node"] == node.name
        assert (node.home / ".erlang.cookie").exists()
        # And a durable queue holding a persistent message
        conn = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("kept", durable=True)
        ch.basic_publish("", "kept", b"x", pika.BasicProperties(delivery_mode=2))
        conn.close()
        # When it is killed with SIGKILL
        pgid = node.pid
        assert pgid is not None
        node.kill9()
        # Then its whole process group is gone, and epmd (shared with every node) is not
        assert not port_open(node.port) and not group_alive(pgid)
        assert epmd_pids() >= epmd_before and port_open(EPMD_PORT)
        # When it starts again: same name, ports and data
        node.restart()
        conn = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
        try:
            kept = conn.channel().queue_declare("kept", passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            # (seen once in CI, not reproduced in 18 kill -9/restart cycles idle and under load:
            # say what the restarted node holds and logged)
            raise AssertionError(f"{exc}; queues: {node.ctl('list_queues', 'name', 'messages')}"
                                 f"\n{node.tail(40)}") from exc
        assert kept == 1
        conn.close()
        pgid = node.pid
        assert pgid is not None
    # And close stops it for good and removes its files
    assert not group_alive(pgid) and not node.base.exists()
