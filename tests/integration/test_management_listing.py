"""The one rule for a queue listing's timeout: http_timeout, or 3 s per 1,000 queues
expected, whichever is longer (known from the last listing, or /api/overview before it)."""

from __future__ import annotations

from dataclasses import replace

from queuewatch.broker.management import (
    LIST_SECONDS_PER_1000_QUEUES,
    ManagementClient,
    listing_timeout,
)
from tests.many_queues import declare_many


def test_the_listing_timeout_grows_with_the_queues_and_never_undercuts_http_timeout():
    assert listing_timeout(10.0, None) == 10.0
    assert listing_timeout(10.0, 1_000) == 10.0
    assert listing_timeout(10.0, 20_000) == 20 * LIST_SECONDS_PER_1000_QUEUES == 60.0


async def test_a_first_listing_is_sized_by_the_overview_and_the_next_by_the_last(
        connection, settings, vhost):
    # Given 1,500 queues in the vhost and a client that has listed nothing yet
    await declare_many(connection, 1_500)
    mgmt = ManagementClient(replace(settings, http_timeout=2.0))
    try:
        assert mgmt.queues_seen is None
        # When it sizes its first listing: by the broker's queue count (every vhost's, so at
        # least these 1,500: 4.5 s, over the 2 s http_timeout)
        first = await mgmt._listing_timeout()
        assert first >= 1.5 * LIST_SECONDS_PER_1000_QUEUES
        # When it has listed the vhost's queues, the next listing is sized by what it listed
        listed = await mgmt.queues_unpaged(vhost, ("name",))
        assert len(listed) >= 1_500
        assert mgmt.queues_seen == len(listed)
        assert await mgmt._listing_timeout() == listing_timeout(2.0, len(listed))
    finally:
        await mgmt.aclose()
