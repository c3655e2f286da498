"""How a publish call becomes one AMQP message (no broker)."""

from __future__ import annotations

import json
import time

import pytest

from queuewatch import envelope
from queuewatch.producer import build
from queuewatch.producer._common import cap_of, delay_levels_of, published
from queuewatch.topology import DEFAULT_DELAY_LEVELS, QueueSpec, Topology, delay_routing_key


def test_plain_job_goes_to_the_default_exchange_as_json():
    out = build("emails", {"to": "a@b"}, delay_levels=8, priority=3, job_id="j1",
                headers={"tenant": "acme"})
    assert (out.exchange, out.routing_key, out.queue) == ("", "emails", "emails")
    assert json.loads(out.body) == {"to": "a@b"} and out.content_type == envelope.JSON
    assert out.message_id == "j1" and out.priority == 3
    assert abs(out.timestamp - time.time()) < 2
    assert out.headers[envelope.H_ATTEMPT] == 1 and out.headers["tenant"] == "acme"
    assert out.headers[envelope.H_PUBLISHED_MS] // 1000 == out.timestamp
    assert envelope.H_IDEMPOTENCY_KEY not in out.headers


def test_bytes_stay_bytes_and_ids_are_generated():
    a = build("q", b"\x00\x01", delay_levels=8)
    b = build("q", b"\x00\x01", delay_levels=8)
    assert a.body == b"\x00\x01" and a.content_type == "application/octet-stream"
    assert a.message_id != b.message_id and len(a.message_id) == 32


def test_idempotency_key_header_only_when_it_differs_from_the_id():
    assert build("q", 1, delay_levels=8, job_id="k", idempotency_key="k").headers.get(
        envelope.H_IDEMPOTENCY_KEY) is None
    out = build("q", 1, delay_levels=8, job_id="j", idempotency_key="k")
    assert envelope.idempotency_key_of(out.message_id, out.headers) == "k"


@pytest.mark.parametrize("delay, seconds", [(1, 1), (2.2, 3), (0.4, 1), (255, 255)])
def test_delays_route_through_the_delay_levels(delay, seconds):
    out = build("q", {}, delay_levels=8, delay=delay)
    assert out.exchange == "queuewatch.delay.7"
    assert out.routing_key == delay_routing_key(seconds, 8)
    assert out.headers[envelope.H_TARGET] == "q"
    assert published(out).delay == seconds


def test_zero_delay_is_no_delay_and_too_long_a_delay_is_refused():
    assert build("q", {}, delay_levels=8, delay=0).exchange == ""
    with pytest.raises(ValueError, match="exceeds"):
        build("q", {}, delay_levels=8, delay=256)


def test_bad_priority_is_refused():
    with pytest.raises(ValueError):
        build("q", {}, delay_levels=8, priority=256)


def test_unserialisable_payload_fails_before_sending():
    with pytest.raises(TypeError):
        build("q", {"x": object()}, delay_levels=8)


def test_delay_levels_and_cap_from_topology_or_int():
    topo = Topology(queues=(QueueSpec("q", max_length=5),), delay_levels=4)
    assert delay_levels_of(topo) == 4 and delay_levels_of(6) == 6
    assert delay_levels_of(None) == DEFAULT_DELAY_LEVELS
    assert cap_of(topo, "q") == "5 messages" and cap_of(topo, "other") is None and cap_of(4, "q") is None
