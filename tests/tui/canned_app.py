"""Build the console on canned snapshots (deterministic: fixed data, fixed clock)."""

from __future__ import annotations

from queuewatch.config import Settings
from queuewatch.errors import BrokerUnavailable
from queuewatch.tui import make_app
from queuewatch.tui.app import QueuewatchApp
from queuewatch.tui.canned import (
    T0,
    demo_busy_snapshot,
    demo_dead_letters,
    demo_scheduled,
    demo_snapshot,
)
from queuewatch.tui.source import SnapshotSource


def canned_app(read_only: bool = False, steps: int = 1, busy: bool = False) -> QueuewatchApp:
    """``busy``: more jobs in flight (the Busy view's snapshots)."""
    snap = demo_busy_snapshot if busy else demo_snapshot
    source = SnapshotSource(
        [snap(i) for i in range(steps)], vhost="demo", vhost_names=("demo", "other"),
        dead_letters={"thumbnails.dlq": demo_dead_letters(4)},
    )
    source.scheduled = demo_scheduled(T0 + 5 * steps)
    settings = Settings(read_only=read_only)
    # A long poll interval: one poll, then nothing moves while the screenshot is taken.
    return make_app(settings, source, clock=lambda: T0 + 5 * steps, poll_interval=3600)


class CountingSource(SnapshotSource):
    """Canned snapshots that count DLQ reads and can fail actions or polls on demand."""

    def __init__(self, *args, fail_polls_after: int | None = None, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.peeks = 0
        self.fail_polls_after = fail_polls_after
        self.poll_error: Exception = BrokerUnavailable("connection refused (canned)")

    async def poll(self):  # type: ignore[no-untyped-def]
        if self.fail_polls_after is not None and self.polls >= self.fail_polls_after:
            self.polls += 1
            raise self.poll_error
        return await super().poll()

    async def peek_dlq(self, dlq, flt, limit):  # type: ignore[no-untyped-def]
        self.peeks += 1
        return await super().peek_dlq(dlq, flt, limit)


def counting_app(snapshots, *, clock=None, dead_letters=None, read_only=False,  # type: ignore[no-untyped-def]
                 poll_interval=3600.0, **kw):
    source = CountingSource(snapshots, vhost="demo", read_only=read_only,
                            dead_letters=dead_letters or {}, **kw)
    app = make_app(Settings(read_only=read_only), source,
                   clock=clock or (lambda: snapshots[0].taken_at + 5), poll_interval=poll_interval)
    return app, source
