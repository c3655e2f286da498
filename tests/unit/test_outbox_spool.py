"""The outbox spool and its metrics without a broker: jobs kept in order with their
priority, headers and due time; a delayed job re-routed with the delay that is left; one
spool per producer; the observer's gauges."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from queuewatch import envelope
from queuewatch.errors import ConfigError
from queuewatch.metrics.producer import PrometheusProducerObserver
from queuewatch.producer import build
from queuewatch.producer.outbox import rebase
from queuewatch.producer.spool import Spool
from queuewatch.topology import delay_entry_exchange


def test_spool_keeps_order_priority_headers_and_due_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "p.sqlite")
    jobs = [build("q", {"n": i}, delay_levels=8, priority=i % 3, job_id=f"j{i}",
                  headers={"tenant": "a"}) for i in range(5)]
    later = build("q", b"raw", delay_levels=8, delay=100, job_id="later")
    spool.put(jobs)
    spool.put([later])
    got = spool.oldest(10)
    assert [g.out.message_id for g in got] == ["j0", "j1", "j2", "j3", "j4", "later"]
    assert [g.out for g in got[:5]] == jobs  # byte for byte, properties and headers
    assert got[5].due_ms == later.headers[envelope.H_PUBLISHED_MS] + 100_000
    assert spool.depth() == 6
    spool.delete([got[0].seq, got[1].seq])
    assert spool.depth() == 4 and spool.oldest(1)[0].out.message_id == "j2"
    # the same file, while open, is refused to a second producer
    with pytest.raises(ConfigError, match="in use by another producer"):
        Spool(tmp_path / "p.sqlite")
    spool.close()
    again = Spool(tmp_path / "p.sqlite")  # after a restart: all there
    assert again.depth() == 4
    again.close()


def test_rebase_sends_the_delay_that_is_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "p.sqlite")
    out = build("q", {}, delay_levels=8, delay=100, job_id="d")
    spool.put([out])
    (item,) = spool.oldest(1)
    assert item.due_ms is not None
    # 40 s later: 60 s left, through the delay levels
    half = rebase(item, item.due_ms - 60_000, 8)
    assert half.exchange == delay_entry_exchange(8) and half.headers[envelope.H_DELAY_MS] == 60_000
    # past its time: straight to its queue, no delay headers
    due = rebase(item, item.due_ms + 1, 8)
    assert (due.exchange, due.routing_key) == ("", "q")
    assert envelope.H_DELAY_MS not in due.headers and envelope.H_TARGET not in due.headers
    spool.close()


def test_prometheus_observer_shows_outbox_depth_and_age() -> None:
    registry = CollectorRegistry()
    obs = PrometheusProducerObserver(registry, producer="web-1")
    obs.on_outbox(42, 3.5)
    obs.on_publish_nack("q")
    assert registry.get_sample_value("queuewatch_producer_outbox_depth", {"producer": "web-1"}) == 42
    assert registry.get_sample_value("queuewatch_producer_outbox_oldest_age_seconds",
                                     {"producer": "web-1"}) == 3.5
    assert registry.get_sample_value("queuewatch_producer_nacks_total",
                                     {"producer": "web-1", "queue": "q"}) == 1
    obs.on_outbox(0, None)
    assert registry.get_sample_value("queuewatch_producer_outbox_oldest_age_seconds",
                                     {"producer": "web-1"}) == 0
