"""Hooks a producer calls (no-ops here); the Prometheus observer counts them."""

from __future__ import annotations


class ProducerObserver:
    """Base class of producer hooks; override what you need."""

    def on_publish_nack(self, queue: str) -> None:
        """The broker refused a publish to ``queue`` (it is at its cap)."""

    def on_blocked(self, blocked: bool) -> None:
        """The broker blocked (True) or unblocked (False) the producer's connection."""

    def on_outbox(self, depth: int, oldest_age: float | None) -> None:
        """The outbox changed: ``depth`` jobs spooled, the oldest waiting ``oldest_age``
        seconds (None: empty). Only with ``outbox = true``."""
