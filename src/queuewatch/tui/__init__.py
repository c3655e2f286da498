"""The Textual console. The only package of queuewatch that imports ``textual``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from queuewatch.config import Settings
    from queuewatch.tui.app import QueuewatchApp
    from queuewatch.tui.source import DataSource


def make_app(
    settings: Settings, source: DataSource | None = None, *, clock: Callable[[], float] | None = None,
    poll_interval: float | None = None, exit_after: float | None = None,
    screenshot: str | None = None,
) -> QueuewatchApp:
    """The console app, shared by ``queuewatch tui``/``demo`` and the tests.

    ``source`` defaults to the live monitor on ``settings``; pass a
    :class:`~queuewatch.tui.source.SnapshotSource` for canned data.
    """
    import time

    from queuewatch.tui.app import QueuewatchApp

    if source is None:
        from queuewatch.tui.live import LiveSource

        live: DataSource = LiveSource(settings)
        source = live
    return QueuewatchApp(
        settings, source, clock=clock or time.time, poll_interval=poll_interval,
        exit_after=exit_after, screenshot=screenshot,
    )
