"""``queuewatch queues pause|resume|limit`` on a queue that does not exist (a typo) is one
line and exit 2, and nothing is written: it used to answer "paused 'emials': workers take no
new jobs from it", exit 0, while the queue meant went on."""

from __future__ import annotations

import pytest

from queuewatch.audit import AuditLog
from queuewatch.events.queuestate import state_stream
from queuewatch.topology import QueueSpec
from tests.cli_helpers import assert_one_line_error, qw
from tests.helpers import declare


@pytest.mark.parametrize("args", [("pause",), ("resume",), ("limit", "_", "5")])
async def test_a_missing_queue_is_one_line_and_nothing_is_written(connection, settings, vhost,
                                                                   mgmt, args):
    await declare(connection, vhost, QueueSpec("emails"), delay_levels=1)
    env = {"QUEUEWATCH_AMQP_URL": settings.amqp_url, "QUEUEWATCH_VHOST": vhost,
           "QUEUEWATCH_STATE_DIR": str(settings.state_dir)}
    action, *rest = args
    argv = ["queues", action, "emials", *rest[1:]]
    assert_one_line_error(qw(*argv, env=env), "queue 'emials' does not exist in this vhost")
    assert AuditLog.from_settings(settings).read() == []
    assert await mgmt.queue(vhost, state_stream(settings.control_exchange)) is None
