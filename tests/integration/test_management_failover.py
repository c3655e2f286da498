"""The management client fails over along ``management_urls`` and remembers what answered."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from queuewatch.broker.management import ManagementClient
from queuewatch.errors import BrokerUnavailable

pytestmark = pytest.mark.timeout(60)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_first_address_fails_over_and_is_remembered(settings, vhost):
    # Given a dead first address, then the real management API
    dead = f"http://guest:secret-pw@127.0.0.1:{closed_port()}"
    two = replace(settings, management_urls=(dead, settings.management_url))
    async with ManagementClient(two) as mgmt:
        # When asked, Then the second address answers and becomes the current one
        assert (await mgmt.overview())["rabbitmq_version"]
        assert mgmt.base_url == settings.management_url.rstrip("/")
        assert mgmt.display_url == mgmt.base_url.replace("guest:guest@", "guest:***@")
        # And the next request goes straight there (no second try of the dead one)
        assert await mgmt.queue(vhost, "no-such-queue") is None
        assert mgmt.base_url == settings.management_url.rstrip("/")


async def test_all_addresses_down_is_one_line_with_passwords_masked(settings):
    urls = tuple(f"http://guest:secret-pw@127.0.0.1:{closed_port()}" for _ in range(2))
    async with ManagementClient(replace(settings, management_urls=urls)) as mgmt:
        with pytest.raises(BrokerUnavailable) as err:
            await mgmt.overview()
    text = str(err.value)
    assert "none of the 2 management API addresses answered" in text
    assert "\n" not in text and "secret-pw" not in text


async def test_a_single_address_keeps_its_message(settings):
    one = replace(settings, management_url=f"http://127.0.0.1:{closed_port()}", management_urls=())
    async with ManagementClient(one) as mgmt:
        with pytest.raises(BrokerUnavailable, match="cannot reach the management API at"):
            await mgmt.overview()
