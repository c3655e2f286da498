"""The exporter at a few thousand queues: one render per snapshot whatever the scrapes, a
gzip answer a real client decodes, and a poll slower than the interval stretches it and
says so (queuewatch_poll_interval_seconds / _stretched)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuewatch.metrics import Exporter, poller
from queuewatch.monitor import pacing
from tests.helpers import wait_until
from tests.many_queues import declare_many

pytestmark = pytest.mark.timeout(120)

QUEUES = 2_000


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def listed(mgmt, vhost: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await mgmt.queues_unpaged(vhost, ("name",))) >= n


async def test_scrapes_at_2000_queues_share_one_render(connection, mgmt, settings, vhost):
    # Given 2,000 queues and an exporter polling every 60 s, after its first poll
    await declare_many(connection, QUEUES)
    await wait_until(lambda: listed(mgmt, vhost, QUEUES), timeout=60, interval=0.5,
                     what="2,000 queues listed")
    exporter = Exporter(settings, heartbeats=False, max_age=60)
    try:
        port = exporter.start(0)
        # When scraped six times, half of them asking for gzip (httpx decodes it)
        bodies, encodings = [], []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            for i in range(6):
                headers = {"Accept-Encoding": "gzip" if i % 2 else "identity"}
                resp = await c.get("/metrics", headers=headers)
                assert resp.status_code == 200
                encodings.append(resp.headers.get("content-encoding"))
                bodies.append(samples(resp.text))
        polls, renders = exporter.poller.polls, exporter.exposition.renders
    finally:
        exporter.close()
    # Then one poll was rendered once, and every scrape served all 2,000 queues
    assert (polls, renders) == (1, 1)
    assert encodings == [None, "gzip"] * 3
    for body in bodies:  # (plus the job-events stream the exporter reads, if made by then)
        assert body[("queuewatch_queues_exported", ())] >= QUEUES
        assert sum(1 for name, labels in body if name == "queuewatch_queue_consumers"
                   and dict(labels)["queue"].startswith("many-")) == QUEUES
    # And the snapshot's age is taken at each scrape (it grows), the snapshot is the same one
    ages = [b[("queuewatch_snapshot_age_seconds", ())] for b in bodies]
    assert ages == sorted(ages) and ages[-1] > ages[0]
    assert len({b[("queuewatch_snapshot_timestamp_seconds", ())] for b in bodies}) == 1
    assert all(b[("queuewatch_poll_interval_stretched", ())] == 0 for b in bodies)


async def test_a_poll_slower_than_the_interval_stretches_it_and_says_so(
        connection, mgmt, settings, vhost, monkeypatch):
    # Given 2,000 queues, an exporter whose interval (5 ms) is shorter than any poll of
    # them (a poll took 0.1 s on a fast machine), and stretching allowed for polls that
    # short (by default polls under 5 s never stretch an interval of at least 0.1 s)
    monkeypatch.setattr(pacing, "STRETCH_AFTER", 0.0)
    monkeypatch.setattr(poller, "MIN_INTERVAL", 0.001)  # (0.1 s by default)
    await declare_many(connection, QUEUES)
    await wait_until(lambda: listed(mgmt, vhost, QUEUES), timeout=60, interval=0.5,
                     what="2,000 queues listed")
    exporter = Exporter(settings, heartbeats=False, max_age=0.005)
    try:
        port = exporter.start(0)
        await wait_until(lambda: exporter.poller.pace is not None, timeout=30,
                         what="a first paced poll")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            body = samples((await c.get("/metrics")).text)
        pace = exporter.poller.pace
    finally:
        exporter.close()
    # Then the exporter says the interval stretched to 1.5x a poll, longer than asked
    assert pace is not None and pace.stretched
    assert body[("queuewatch_poll_interval_stretched", ())] == 1
    assert body[("queuewatch_poll_interval_seconds", ())] > 0.005
    assert pace.poll_seconds is not None
    assert pace.pause == pytest.approx(pacing.STRETCH_FACTOR * pace.poll_seconds)
    assert pace.queues is not None and pace.queues >= QUEUES
