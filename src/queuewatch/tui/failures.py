"""How an action that failed in the background is shown.

Textual's ``Worker.StateChanged`` does not bubble: a worker started by a view reports to
that view only, never to the app. Every view and screen that starts workers mixes in
:class:`ReportsFailures`, so a failed reload, replay, delete, export, cancel or terminate
says what went wrong instead of nothing.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message
from textual.worker import Worker, WorkerState

from queuewatch.errors import QueuewatchError


def as_error(exc: BaseException | None) -> QueuewatchError:
    """A worker's exception as the error the console shows (unexpected ones named as such)."""
    if isinstance(exc, QueuewatchError):
        return exc
    return QueuewatchError(f"unexpected {type(exc).__name__}: {exc}")


class ActionFailed(Message):
    """A background action of a view failed; the app shows it (it bubbles up to the app)."""

    def __init__(self, action: str, error: QueuewatchError) -> None:
        super().__init__()
        self.action = action
        self.error = error


class ReportsFailures:
    """Turns a failed worker of this node into an :class:`ActionFailed` message, and lets
    the node react (``show_failure``: clear a progress bar, say it in its help line)."""

    def on_worker_state_changed(self: Any, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        worker = event.worker
        error = as_error(worker.error)
        if not isinstance(worker.error, QueuewatchError):
            self.log.error(f"{worker.name} failed: {worker.error!r}")
        self.show_failure(str(error))
        self.post_message(ActionFailed(worker.group or worker.name, error))

    def show_failure(self, text: str) -> None:
        """Hook: the node's own reaction to a failure (nothing by default)."""
