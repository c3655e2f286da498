"""Observing the broker: snapshots, rates, lag, ETAs, workers, stuck jobs, alerts.

Public API: :class:`Monitor` (``await monitor.poll()`` -> :class:`Snapshot`,
``monitor.history.get(name)``), :class:`AmqpHeartbeatSource`, :func:`snapshot_to_json`.
"""

from queuewatch.monitor.core import Monitor, interval_warning
from queuewatch.monitor.heartbeats import AmqpHeartbeatSource, HeartbeatSource, StaticHeartbeats
from queuewatch.monitor.history import HistoryPoint, QueueHistory
from queuewatch.monitor.jsonview import snapshot_to_json
from queuewatch.monitor.model import Snapshot

__all__ = [
    "AmqpHeartbeatSource", "HeartbeatSource", "HistoryPoint", "Monitor", "QueueHistory",
    "Snapshot", "StaticHeartbeats", "interval_warning", "snapshot_to_json",
]
