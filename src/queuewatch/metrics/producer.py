"""Prometheus metrics of a producer: a :class:`ProducerObserver` that keeps its gauges and
counters in a registry of your choice (serve it with ``prometheus_client``'s own server or
your web framework's ``/metrics``)::

    observer = PrometheusProducerObserver(registry, producer="web-1")
    producer = AsyncProducer(settings, observer=observer)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from queuewatch.producer.observer import ProducerObserver


class PrometheusProducerObserver(ProducerObserver):
    def __init__(self, registry: CollectorRegistry, *, producer: str = "queuewatch-producer") -> None:
        self.producer = producer
        self.nacks = Counter("queuewatch_producer_nacks", "Publishes refused by a full queue",
                             ["producer", "queue"], registry=registry)
        self.blocked = Gauge("queuewatch_producer_blocked",
                             "1 while the broker blocks this producer (resource alarm)",
                             ["producer"], registry=registry)
        self.outbox_depth = Gauge("queuewatch_producer_outbox_depth",
                                  "Jobs waiting in the producer's outbox (broker unreachable)",
                                  ["producer"], registry=registry)
        self.outbox_age = Gauge("queuewatch_producer_outbox_oldest_age_seconds",
                                "Age of the oldest job in the outbox (0 when empty)",
                                ["producer"], registry=registry)
        self.outbox_depth.labels(producer).set(0)
        self.outbox_age.labels(producer).set(0)

    def on_publish_nack(self, queue: str) -> None:
        self.nacks.labels(self.producer, queue).inc()

    def on_blocked(self, blocked: bool) -> None:
        self.blocked.labels(self.producer).set(1 if blocked else 0)

    def on_outbox(self, depth: int, oldest_age: float | None) -> None:
        self.outbox_depth.labels(self.producer).set(depth)
        self.outbox_age.labels(self.producer).set(oldest_age or 0.0)
