"""Prometheus metrics: the collector (fresh families per scrape) and the HTTP exporter."""

from queuewatch.metrics.collector import QueuewatchCollector, SnapshotCache, snapshot_families
from queuewatch.metrics.server import DEFAULT_BIND, DEFAULT_PORT, Exporter, build_registry

__all__ = [
    "DEFAULT_BIND", "DEFAULT_PORT", "Exporter", "QueuewatchCollector", "SnapshotCache",
    "build_registry", "snapshot_families",
]
