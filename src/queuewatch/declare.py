"""Moved to :mod:`queuewatch.broker.declare` (declaring is the topology's broker edge)."""

from queuewatch.broker.declare import declare_topology

__all__ = ["declare_topology"]
