"""An operator with only the ``management`` tag (the least a management-API user can have):
the monitor and the DLQ tools work with what that user may see, and a missing tag is
reported as such, not as a wrong password."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

from queuewatch.broker.management import ManagementClient, q
from queuewatch.config import Settings
from queuewatch.dlq import DeadLetterQueue
from queuewatch.errors import AuthenticationFailed, NotAuthorised
from queuewatch.monitor import Monitor, snapshot_to_json
from tests.integration.test_dlq_support import publish_dead_letters, setup_jobs


def with_user(settings: Settings, user: str, password: str) -> Settings:
    parts = urlsplit(settings.amqp_url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 5672}"
    return replace(settings, amqp_url=urlunsplit(parts._replace(netloc=netloc)),
                   management_username=None, management_password=None)


@pytest.fixture
def operator(admin_http: httpx.Client, settings: Settings, vhost: str) -> Iterator[Settings]:
    """Settings of a fresh user tagged ``management`` only, with full rights on the vhost."""
    user, password = f"qwt-op-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    admin_http.put(f"/users/{q(user)}", json={"password": password, "tags": "management"}
                   ).raise_for_status()
    admin_http.put(f"/permissions/{q(vhost)}/{q(user)}",
                   json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    yield with_user(settings, user, password)
    admin_http.delete(f"/users/{q(user)}")


async def test_monitor_works_without_the_monitoring_tag_and_says_what_it_cannot_see(
        operator, connection, vhost):
    await setup_jobs(connection, vhost)
    async with ManagementClient(operator) as mgmt:
        snap = await Monitor(mgmt, operator).poll()
        # the queues are there; the nodes are not, and the snapshot says why
        assert "jobs" in {qs.name for qs in snap.queues}
        assert snap.nodes == () and snap.nodes_hidden is not None
        assert "monitoring" in snap.nodes_hidden
        assert snapshot_to_json(snap)["nodes_hidden"] == snap.nodes_hidden
        # asked directly, the refusal names the missing tag (not the password)
        with pytest.raises(NotAuthorised, match="'monitoring' tag"):
            await mgmt.get("/nodes")
    async with ManagementClient(with_user(operator, operator.credentials[0], "wrong")) as bad:
        with pytest.raises(AuthenticationFailed):
            await bad.overview()


async def test_bulk_replay_without_the_policymaker_tag_goes_message_by_message(
        operator, connection, vhost):
    from queuewatch.broker.connect import connect

    await setup_jobs(connection, vhost)
    await publish_dead_letters(connection, "jobs", 1500, batch=750)
    conn = await connect(operator)
    try:
        async with ManagementClient(operator) as mgmt:
            dlq = DeadLetterQueue(conn, mgmt, operator, "jobs.dlq")
            # asking for the shovel explicitly fails, naming the tag
            with pytest.raises(NotAuthorised, match="policymaker"):
                await dlq.replay(via_shovel=True)
            # the default takes the other way, and everything is replayed
            result = await dlq.replay()
    finally:
        await conn.close()
    assert (result.via, result.replayed, result.outcome) == ("messages", 1500, "ok")
