"""Queue specs and topology files: arguments, delay routing keys, and bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuewatch.errors import ConfigError
from queuewatch.topology import (
    QueueSpec,
    RetryPolicy,
    Topology,
    delay_level_arguments,
    delay_routing_key,
    load_topology,
    topology_from_mapping,
)


def test_job_queue_arguments():
    spec = QueueSpec("emails", max_priority=5, max_length=100, max_length_bytes=1000)
    assert spec.arguments() == {
        "x-max-priority": 5,
        "x-max-length": 100,
        "x-max-length-bytes": 1000,
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "emails.dlq",
    }
    assert QueueSpec("plain", max_priority=None, dlq=False).arguments() == {}


def test_delay_levels_are_quorum_at_least_once():
    args = delay_level_arguments(3)
    assert args["x-queue-type"] == "quorum" and args["x-message-ttl"] == 8000
    assert args["x-dead-letter-strategy"] == "at-least-once" and args["x-overflow"] == "reject-publish"
    assert args["x-dead-letter-exchange"] == "queuewatch.delay.2"
    assert delay_level_arguments(0)["x-dead-letter-exchange"] == "queuewatch.delivery"


@given(st.integers(min_value=0, max_value=2**16 - 1))
def test_delay_routing_key_encodes_the_bits(seconds):
    key = delay_routing_key(seconds, 16)
    words = key.split(".")
    assert len(words) == 16 and int("".join(words), 2) == seconds


def test_delay_out_of_range():
    with pytest.raises(ValueError, match="exceeds"):
        delay_routing_key(16, 4)
    with pytest.raises(ValueError, match="negative"):
        delay_routing_key(-1, 4)


def test_backoff_grows_and_caps():
    r = RetryPolicy(backoff_initial=1, backoff_multiplier=2, backoff_max=10, jitter=0.5)
    assert [r.delay_for(a) for a in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
    assert r.delay_for(3, rand=0.99) == 6  # 4 * 1.495, rounded


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "bad name"}, "invalid"),
        ({"name": "amq.x"}, "reserved"),
        ({"name": "q", "max_priority": -1}, "must not be negative"),
        ({"name": "q", "max_length": -5}, "must not be negative"),
        ({"name": "q", "max_priority": 300}, "<= 255"),
        ({"name": "q", "queue_type": "stream"}, "classic' or 'quorum"),
        ({"name": "q", "queue_type": "quorum", "max_priority": 5}, "quorum"),
        ({"name": "q", "retry": RetryPolicy(max_attempts=0)}, "max_attempts"),
        ({"name": "q", "timeout": 0}, "timeout must be > 0"),
    ],
)
def test_bad_specs(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        QueueSpec(**kwargs)


def test_topology_file_defaults_and_overrides(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(
        "delay_levels = 10\n[defaults]\nmax_priority = 4\n[defaults.retry]\nmax_attempts = 2\n"
        '[[queue]]\nname = "a"\n[[queue]]\nname = "b"\nmax_priority = 0\n[queue.retry]\nmax_attempts = 7\n'
    )
    topo = load_topology(path)
    assert topo.delay_levels == 10 and topo.max_delay == 1023
    assert topo.queue("a").max_priority == 4 and topo.queue("a").retry.max_attempts == 2
    assert topo.queue("b").max_priority == 0 and topo.queue("b").retry.max_attempts == 7


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "no queues"),
        ({"queue": [{"max_length": 1}]}, "missing 'name'"),
        ({"queue": [{"name": "a", "colour": "red"}]}, "unknown key(s) colour"),
        ({"queue": [{"name": "a", "retry": {"tries": 3}}]}, "unknown key(s) tries"),
        ({"queue": [{"name": "a"}, {"name": "a"}]}, "declared twice"),
        ({"queue": [{"name": "a"}], "delay_levels": 40}, "delay_levels"),
        ({"queue": [{"name": "a", "max_length": 1.5}]}, "whole number"),
        ({"queues": []}, "unknown key(s) queues"),
    ],
)
def test_bad_topology_mappings(data, fragment):
    with pytest.raises(ConfigError) as info:
        topology_from_mapping(data, "t.toml")
    assert fragment in str(info.value)


def test_example_topology_parses():
    from pathlib import Path

    topo = load_topology(Path(__file__).parents[2] / "examples" / "topology.toml")
    assert isinstance(topo, Topology) and {q.name for q in topo.queues} == {"emails", "reports"}


def test_without_delay_deaths_keeps_the_jobs_own_history_only():
    from queuewatch.topology import without_delay_deaths
    own = {"queue": "legacy", "reason": "rejected", "count": 1}
    headers = {"x-qw-job-id": "j", "x-death": [
        {"queue": "queuewatch.due.jobs", "reason": "expired", "count": 2},
        {"queue": b"queuewatch.delay.0", "reason": "expired", "count": 1}, own]}
    assert without_delay_deaths(headers) == {"x-qw-job-id": "j", "x-death": [own]}
    assert without_delay_deaths({"x-death": [{"queue": "queuewatch.delay.3"}]}) == {}
    assert without_delay_deaths({"a": 1}) == {"a": 1}
    assert headers["x-death"][0]["queue"] == "queuewatch.due.jobs"  # the input is not changed


def test_a_delayed_publish_drops_delay_deaths_from_the_callers_headers():
    from queuewatch.producer._common import build
    out = build("jobs", {}, delay=3, delay_levels=4,
                headers={"x-death": [{"queue": "queuewatch.delay.0"}]})
    assert "x-death" not in out.headers


def test_scheduling_queues_are_the_delay_levels_and_due_queues_only():
    from queuewatch.topology import is_scheduling_queue
    assert is_scheduling_queue("queuewatch.delay.0") and is_scheduling_queue(b"queuewatch.due.q")
    assert not any(is_scheduling_queue(n) for n in ("queuewatch.webhooks", "q.dlq", None, 3))
