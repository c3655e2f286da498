"""The exporter's cached exposition: rendered once per snapshot, same text as
prometheus_client, gzip valid with the scrape-time tail, the age computed at the scrape."""

from __future__ import annotations

import gzip

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from queuewatch.metrics import QueuewatchCollector, build_registry
from queuewatch.metrics.exposition import Exposition, render_text
from queuewatch.monitor.model import BrokerInfo, NodeStats, Snapshot
from queuewatch.monitor.queues import parse_queue

NOW = 1_700_000_000.0


def snapshot(n: int, taken_at: float = NOW) -> Snapshot:
    names = [f"q-{i}" for i in range(n)] + ['odd "name"\\with\nnewline']
    queues = tuple(parse_queue({"name": name, "vhost": "v", "messages_ready": i * 3,
                                "messages_unacknowledged": 1, "consumers": i % 2,
                                "arguments": {"x-max-length": 1_000_000},
                                "head_message_timestamp": taken_at - 12.5,
                                "message_stats": {"publish_details": {"rate": 1.5e-7 * i}}},
                               taken_at) for i, name in enumerate(names))
    return Snapshot(taken_at=taken_at, vhost="v", broker=BrokerInfo(url="http://x"),
                    nodes=(NodeStats("n1", running=True),), queues=queues, poll_seconds=0.25)


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_render_text_writes_what_prometheus_client_writes():
    # Given the families of a snapshot with awkward label values
    collector = QueuewatchCollector(lambda: snapshot(50))
    families = collector.families(snapshot(50))
    # When rendered by both
    ours, theirs = render_text(families), generate_latest(_registry_of(families))
    # Then the bytes are the same
    assert ours == theirs


def _registry_of(families):  # type: ignore[no-untyped-def]
    class Fixed:
        def collect(self):  # type: ignore[no-untyped-def]
            return families

    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())  # type: ignore[arg-type]
    return registry


def test_several_scrapes_of_one_snapshot_render_it_once():
    # Given an exposition over a source that always has the same 2,000-queue snapshot,
    # prepared once (as the background poll does), and a clock the test moves
    snap = snapshot(2_000)
    clock = [NOW + 1.0]
    collector = QueuewatchCollector(lambda: snap, clock=lambda: clock[0])
    exposition = Exposition(collector, build_registry(collector))
    exposition.prepare(snap)
    # When scraped five times, plain and gzipped, as the clock moves
    bodies = []
    for i in range(5):
        clock[0] = NOW + 1.0 + i
        chunks = exposition.scrape(gzip=i % 2 == 1)
        raw = b"".join(chunks)
        bodies.append(values((gzip.decompress(raw) if i % 2 else raw).decode()))
    # Then the snapshot was rendered once, and every body holds every queue
    assert exposition.renders == 1
    assert all(sum(1 for (name, _) in b if name == "queuewatch_queue_consumers") == 2_001
               for b in bodies)
    # And the snapshot's age is computed at each scrape, not at render time
    assert [b[("queuewatch_snapshot_age_seconds", ())] for b in bodies] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert bodies[0][("queuewatch_poll_duration_seconds", ())] == 0.25
    # When a new snapshot arrives: one more render
    newer = snapshot(10, NOW + 10)
    snap = newer
    exposition.scrape(gzip=False)
    exposition.scrape(gzip=True)
    assert exposition.renders == 2


def test_a_failing_source_serves_up_zero_without_rendering():
    # Given a source that fails
    from queuewatch.errors import BrokerUnavailable

    def source() -> Snapshot:
        raise BrokerUnavailable("down")

    collector = QueuewatchCollector(source)
    exposition = Exposition(collector, build_registry(collector))
    # When scraped
    body = values(gzip.decompress(b"".join(exposition.scrape(gzip=True))).decode())
    # Then up is 0, the error counted, nothing rendered
    assert body[("queuewatch_up", ())] == 0 and body[("queuewatch_scrape_errors_total", ())] == 1
    assert exposition.renders == 0
