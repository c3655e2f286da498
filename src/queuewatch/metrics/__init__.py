"""Prometheus metrics: the collector, the background poll, queue selection and the HTTP exporter."""

from queuewatch.metrics.collector import QueuewatchCollector, snapshot_families
from queuewatch.metrics.poller import BackgroundPoller
from queuewatch.metrics.select import QueueSelector
from queuewatch.metrics.server import DEFAULT_BIND, DEFAULT_PORT, Exporter, build_registry

__all__ = [
    "DEFAULT_BIND", "DEFAULT_PORT", "BackgroundPoller", "Exporter", "QueueSelector",
    "QueuewatchCollector", "build_registry", "snapshot_families",
]
