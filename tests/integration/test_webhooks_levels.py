"""``queuewatch webhooks`` run without a topology on a vhost declared with fewer delay levels
than the default: it must retry deliveries through the levels the vhost has, not declare a
second set of levels (with two sets, every delayed message is routed twice: a refused
delivery came back dozens of times a second instead of after 1, 2, 4 ... s)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from queuewatch.broker.management import q
from queuewatch.jobs.webhook_service import WebhookService
from queuewatch.topology import WEBHOOKS_QUEUE, QueueSpec, RetryPolicy, delay_queue_name
from tests.helpers import declare, wait_until
from tests.jobs_http import Receiver

SECRET = "test-webhook-secret"


async def test_without_a_topology_webhooks_keep_the_vhosts_delay_levels(connection, settings, vhost,
                                                                       admin_http):
    # Given a vhost declared with 6 delay levels (the default is 20) and a
    # webhook receiver that refuses every delivery
    settings = replace(settings, webhook_secret=SECRET)
    await declare(connection, vhost, QueueSpec("jobs", retry=RetryPolicy(max_attempts=1)),
                         delay_levels=6)
    with Receiver(down=True) as receiver:
        # When the webhook service runs with no topology, and a webhook job is delivered
        # (published as its dispatcher publishes one, so only the delivery half is timed)
        async with WebhookService(settings) as service:
            assert service.topology.delay_levels == 6
            await service.producer.publish(
                WEBHOOKS_QUEUE, {"url": receiver.url, "body": {"job_id": "j1"}},
                job_id="webhook-j1-e1", wait=True)
            await wait_until(lambda: len(receiver.deliveries) >= 1, timeout=30,
                             what="the first delivery")
            await asyncio.sleep(5)
        tries = len(receiver.deliveries)
    # Then the refused delivery was retried with backoff (after about 1 s, then 2 s more):
    # a few tries in those 5 s, not a storm
    assert 2 <= tries <= 4, tries
    # And the vhost still has its 6 levels, and no second set
    names = {e["name"] for e in admin_http.get(f"/exchanges/{q(vhost)}").json()}
    assert delay_queue_name(5) in names and delay_queue_name(6) not in names, sorted(names)
