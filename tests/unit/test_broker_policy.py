"""The reconnect policy and the address list: pure logic, no broker."""

from __future__ import annotations

import random

import pytest

from queuewatch.broker.policy import ReconnectPolicy
from queuewatch.config import load_settings, mask_url
from queuewatch.errors import ConfigError


def test_backoff_ceiling_grows_exponentially_up_to_the_cap():
    p = ReconnectPolicy(initial=0.25, factor=2.0, cap=10.0)
    assert [p.ceiling(n) for n in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert p.ceiling(10_000) == 10.0  # no overflow on a very long outage


def test_full_jitter_spreads_pauses_over_the_whole_range():
    # Given many clients drawing their pause for the same attempt
    p = ReconnectPolicy(initial=1.0, factor=2.0, cap=10.0)
    rng = random.Random(7)
    pauses = [p.delay(3, rng.random) for _ in range(2000)]
    # Then every pause is within [0, ceiling) and they cover it (not clustered at the top,
    # as "equal jitter" or a fixed pause would be)
    assert all(0 <= d < 8.0 for d in pauses)
    assert min(pauses) < 0.5 and max(pauses) > 7.5
    assert 3.5 < sum(pauses) / len(pauses) < 4.5


def test_backoff_resets_after_success():
    b = ReconnectPolicy(initial=1.0, factor=2.0, cap=100.0).backoff(lambda: 0.999)
    first = [round(b.next_delay(), 2) for _ in range(3)]
    b.reset()
    assert first == [1.0, 2.0, 4.0] and round(b.next_delay(), 2) == 1.0


def test_address_lists_from_env_toml_style_and_single_url():
    s = load_settings(env={"QUEUEWATCH_AMQP_URLS": "amqp://u:p@a:5672/v, amqp://u:p@b:5672/v",
                           "QUEUEWATCH_MANAGEMENT_URLS": "http://a:15672,http://b:15672"})
    assert s.amqp_addresses == ("amqp://u:p@a:5672/v", "amqp://u:p@b:5672/v")
    assert s.amqp_url == "amqp://u:p@a:5672/v" and s.effective_vhost == "v"
    assert s.management_addresses == ("http://a:15672", "http://b:15672")
    assert s.management_url == "http://a:15672"
    one = load_settings(env={}, amqp_url="amqp://u:p@a:5672/")
    assert one.amqp_addresses == ("amqp://u:p@a:5672/",)
    assert s.describe()["amqp_urls"] == ["amqp://u:***@a:5672/v", "amqp://u:***@b:5672/v"]


@pytest.mark.parametrize(("urls", "says"), [
    ("amqp://u:p@a:5672/,amqp:/", "amqp_urls[1] = 'amqp:/' names no host"),
    ("amqp://u:S3cr3t/p@host/", "has an invalid port"),
    ("amqp://u:pw@a:99999/", "has an invalid port"),
    ("amqp://[::1", "is not a valid URL"),
    ("http://a/", "must start with amqp:// or amqps://"),
])
def test_a_malformed_address_is_one_line_without_the_password(urls, says):
    with pytest.raises(ConfigError) as info:
        load_settings(env={"QUEUEWATCH_AMQP_URLS": urls})
    text = str(info.value)
    assert says in text and "\n" not in text
    assert "S3cr3t" not in text and ":pw@" not in text


def test_mask_url_masks_even_unparseable_passwords():
    assert mask_url("amqp://user:S3cr3t/p@host/") == "amqp://user:***@host/"
    assert mask_url("amqps://u:p@[::1]:5671/v?x=1") == "amqps://u:***@[::1]:5671/v?x=1"
    assert mask_url("amqp://host/") == "amqp://host/"
