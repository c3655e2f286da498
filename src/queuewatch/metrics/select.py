"""Which queues the exporter exports: include/exclude glob patterns and a cap.

A pattern without ``/`` matches the queue name (``orders.*``); with ``/`` it matches
``vhost/name`` (``prod/orders.*``). Include first (none given: every queue), then exclude,
then the cap: the first ``max_queues`` by (vhost, name), so the same queues are exported
from one scrape to the next and their series do not churn.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from queuewatch.config import Settings
from queuewatch.monitor.model import QueueStats


def _matcher(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@dataclass(frozen=True)
class Selection:
    """The queues to export, and how many were left out and why."""

    queues: tuple[QueueStats, ...]
    filtered: int
    """Left out by the include/exclude patterns."""
    capped: int
    """Left out by the cap (``export_max_queues``)."""


class QueueSelector:
    """Applies ``include`` / ``exclude`` patterns and ``max_queues`` (0: no cap)."""

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = (),
                 max_queues: int = 0) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.max_queues = max_queues
        self._include = _matcher(self.include)
        self._exclude = _matcher(self.exclude)

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueSelector:
        return cls(settings.export_include, settings.export_exclude, settings.export_max_queues)

    @property
    def selects_all(self) -> bool:
        return self._include is None and self._exclude is None and not self.max_queues

    def wanted(self, vhost: str, name: str) -> bool:
        def hit(rx: re.Pattern[str]) -> bool:
            return rx.match(name) is not None or rx.match(f"{vhost}/{name}") is not None

        if self._include is not None and not hit(self._include):
            return False
        return self._exclude is None or not hit(self._exclude)

    def select(self, queues: Sequence[QueueStats]) -> Selection:
        if self.selects_all:
            return Selection(tuple(queues), 0, 0)
        kept = [q for q in queues if self.wanted(q.vhost, q.name)]
        filtered = len(queues) - len(kept)
        capped = 0
        if self.max_queues and len(kept) > self.max_queues:
            kept.sort(key=lambda q: (q.vhost, q.name))
            capped = len(kept) - self.max_queues
            kept = kept[:self.max_queues]
        return Selection(tuple(kept), filtered, capped)
