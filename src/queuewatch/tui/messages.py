"""Typed messages workers post to the app."""

from __future__ import annotations

from textual.message import Message

from queuewatch.monitor.model import Snapshot


class SnapshotReady(Message, bubble=False):
    """A poll finished; the handler updates every view from ``snapshot``."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        # A newer snapshot makes an older, unprocessed one pointless.
        return isinstance(message, SnapshotReady)
