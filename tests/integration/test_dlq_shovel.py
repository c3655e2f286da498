"""Replay through a RabbitMQ shovel: loss-free, as is, and only where it fits."""

from __future__ import annotations

import pytest

from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue
from queuewatch.dlq.shovel import ShovelNotApplicable
from tests.helpers import Ledger, depth
from tests.integration.test_dlq_support import (
    dead_headers,
    drain_ids,
    publish_dead_letters,
    setup_jobs,
)


async def test_replay_via_shovel_moves_everything_and_counts_as_a_replay(
        connection, mgmt, settings, vhost):
    # Given 2,000 dead letters of "jobs"
    await setup_jobs(connection, vhost)
    ledger = Ledger()
    ids = await publish_dead_letters(connection, "jobs", 2000)
    ledger.sent.update(ids)
    ledger.confirmed.update(ids)
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    # When they are replayed through a shovel
    result = await dlq.replay(via_shovel=True)
    # Then all of them are back in "jobs", none left behind, and the shovel is gone
    assert result.replayed == 2000 and await depth(connection, "jobs.dlq") == 0
    assert not [s for s in await mgmt.shovel_status(vhost) if "replay" in str(s.get("name"))]
    channel = await connection.channel()
    q = await channel.declare_queue("jobs", passive=True)
    first = await q.get(no_ack=True)
    await channel.close()
    ledger.record_received([first.message_id, *await drain_ids(connection, "jobs")])
    assert ledger.summary()["lost"] == 0 and ledger.summary()["duplicated"] == 0
    # And the shovel's forward header counts as one replay for the poison-loop guard
    assert "x-shovelled" in first.headers
    from queuewatch.dlq.model import make_dead_letter

    back = make_dead_letter(position=0, body=first.body, properties={},
                            headers=first.headers)
    assert back.replay_count == 1
    assert last_audit_target(settings)["via"] == "shovel"


def last_audit_target(settings):  # type: ignore[no-untyped-def]
    from queuewatch.audit import AuditLog

    return AuditLog.from_settings(settings).read()[-1]["target"]


async def test_shovel_is_refused_where_it_does_not_fit(connection, mgmt, settings, vhost):
    await setup_jobs(connection, vhost)
    await publish_dead_letters(connection, "jobs", 3, headers=lambda i: dead_headers(
        "jobs", replay_count=3 if i == 1 else 0))
    dlq = DeadLetterQueue(connection, mgmt, settings, "jobs.dlq")
    with pytest.raises(ShovelNotApplicable, match="already"):
        await dlq.replay(via_shovel=True)
    with pytest.raises(ShovelNotApplicable, match="no filter"):
        await dlq.replay(DeadLetterFilter(text="x"), via_shovel=True)
    assert await depth(connection, "jobs.dlq") == 3
