"""A due queue's or delay level's ready count includes what its dead-letter worker holds,
whether the broker reports it as ``messages_dlx`` or (a new quorum queue, for a few seconds)
only in ``messages``."""

from __future__ import annotations

import pytest

from queuewatch.monitor.queues import parse_queue

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("record", "ready"), [
    ({"messages_ready": 0, "messages_unacknowledged": 0, "messages_dlx": 36, "messages": 36}, 36),
    ({"messages_ready": 0, "messages_unacknowledged": 0, "messages": 40}, 40),  # no dlx yet
    ({"messages_ready": 2, "messages_unacknowledged": 1, "messages_dlx": 5, "messages": 8}, 7),
    ({"messages_ready": 3}, 3),  # (older records: nothing more to go on)
])
@pytest.mark.parametrize("name", ["queuewatch.due.orders", "queuewatch.delay.2"])
def test_held_dead_letters_count_as_ready(name: str, record: dict[str, int], ready: int) -> None:
    assert parse_queue({"name": name, "vhost": "v", **record}, NOW).ready == ready


def test_a_job_queue_counts_only_its_ready_messages() -> None:
    raw = {"name": "orders", "vhost": "v", "messages_ready": 2, "messages_unacknowledged": 1,
           "messages": 9}
    assert parse_queue(raw, NOW).ready == 2
