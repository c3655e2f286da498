"""The queuewatch console: a Textual app over a :class:`~queuewatch.tui.source.DataSource`.

Polls run in a Textual worker and never overlap: the next one is scheduled with
``set_timer`` when the last one ends. A failed poll leaves the UI up, shows the error and a
retry countdown, and the next poll recovers by itself. The views live on
:class:`~queuewatch.tui.screens.main.MainScreen`; failures of their actions reach the app as
:class:`~queuewatch.tui.failures.ActionFailed` messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from queuewatch.config import Settings
from queuewatch.errors import AuthenticationFailed, NotAuthorised, NotFound, QueuewatchError
from queuewatch.monitor.model import Snapshot
from queuewatch.monitor.pacing import pace
from queuewatch.tui.command_bar import CommandError, action_of, completions, offered, resolve
from queuewatch.tui.commands import help_sections, palette_commands
from queuewatch.tui.failures import ActionFailed, ReportsFailures, as_error
from queuewatch.tui.messages import SnapshotReady
from queuewatch.tui.screens.command_bar import CommandBar
from queuewatch.tui.screens.dialogs import HelpScreen, PickScreen
from queuewatch.tui.screens.main import VIEWS, MainScreen
from queuewatch.tui.screens.queue_detail import QueueDetailScreen
from queuewatch.tui.source import DataSource
from queuewatch.tui.staleness import poll_age, show_staleness
from queuewatch.tui.widgets.dlq_view import DlqView
from queuewatch.tui.widgets.queues_view import QueuesView
from queuewatch.tui.widgets.status import AlertsStrip, StatusBar
from queuewatch.tui.widgets.views import StaleAware

#: Retry delays after failed polls (seconds), capped by the poll interval.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
#: Errors retrying will not fix by itself (a wrong password, a missing vhost): the console
#: says what they are and checks again only every poll interval.
NOT_TRANSIENT = (AuthenticationFailed, NotAuthorised, NotFound)


class QueuewatchApp(App[None]):
    CSS_PATH = "queuewatch.tcss"
    TITLE = "queuewatch"
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
        Binding("colon", "command_bar", "Command"),
    ]

    def __init__(
        self, settings: Settings, source: DataSource, clock: Callable[[], float] = time.time,
        poll_interval: float | None = None, exit_after: float | None = None,
        screenshot: str | None = None,
    ) -> None:
        super().__init__()
        self.exit_after = exit_after
        self.screenshot_path = screenshot
        self._exit_requested = False
        self.settings = settings
        self.source = source
        self.clock = clock
        self.read_only = settings.read_only or source.read_only
        self.poll_interval = poll_interval if poll_interval is not None else settings.poll_interval
        self.snapshot: Snapshot | None = None
        self.error: QueuewatchError | None = None
        self.failures = 0
        self.polls_done = 0
        self._polled: tuple[float, int] | None = None
        """The last good poll's duration and queue count (they pace the next poll)."""
        self._next_poll: Timer | None = None
        self.before_quit: Callable[[], str | None] | None = None
        """Run (in a thread, with "stopping…" on screen) when ``q`` is pressed: the demo stops
        its services there, so quitting shows something instead of a frozen screen."""
        self.main = MainScreen(source, self.read_only, clock)
        """The screen holding the views (``query_one`` on the app searches the active screen,
        which may be a dialog or the queue detail)."""

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def main_ready(self) -> None:
        """The main screen is mounted: start the clock and the first poll."""
        self.main.query_one(StatusBar).show()
        self.set_interval(1.0, self._tick)
        if self.exit_after is not None:
            self.set_timer(self.exit_after, self._exit_after)
        self.poll_now()

    # -- polling -------------------------------------------------------------------------
    @property
    def _views_alive(self) -> bool:
        """False while the app shuts down (late timers and worker events then do nothing)."""
        return not self._exit_requested and self.main.is_attached and bool(
            self.main.query(StatusBar))

    def poll_now(self) -> None:
        """Start a poll unless one is running; polls never overlap."""
        if not self._views_alive:
            return
        if self._next_poll is not None:
            self._next_poll.stop()
            self._next_poll = None
        if any(w.group == "poll" and w.is_running for w in self.workers):
            return
        self.main.query_one(StatusBar).polling = True
        self._poll()

    @work(group="poll", exit_on_error=False)
    async def _poll(self) -> None:
        snapshot = await self.source.poll()
        self._polled = (snapshot.poll_seconds, len(snapshot.queues))
        self.post_message(SnapshotReady(snapshot))

    def _schedule(self, delay: float) -> None:
        status = self.main.query_one(StatusBar)
        status.retry_at = self.clock() + delay if self.error is not None else None
        self._next_poll = self.set_timer(delay, self.poll_now)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Polls (the app's own workers); views report theirs with :class:`ActionFailed`."""
        worker = event.worker
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR) or not self._views_alive:
            return
        if worker.group != "poll":
            if event.state == WorkerState.ERROR:
                ReportsFailures.on_worker_state_changed(self, event)
            return
        self.main.query_one(StatusBar).polling = False
        if event.state == WorkerState.SUCCESS:
            self.error, self.failures = None, 0
            self._show_error(None)
            took, queues = self._polled or (None, None)
            paced = pace(self.poll_interval, took, queues)  # stretched after a slow poll
            self.main.query_one(StatusBar).pace = paced
            self._schedule(paced.pause)
        else:
            self.failures += 1
            self.error = as_error(worker.error)
            self._show_error(str(self.error))
            delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS)) - 1]
            if isinstance(self.error, NOT_TRANSIENT):
                delay = max(self.poll_interval, RETRY_DELAYS[-1])
            self._schedule(min(delay, max(self.poll_interval, 1.0)))
        self.main.query_one(StatusBar).show()

    def show_failure(self, text: str) -> None:
        """An action of the app itself failed (the vhost list)."""

    def on_action_failed(self, message: ActionFailed) -> None:
        """The one place a failed action is shown: a toast that stays 10 s."""
        if self._views_alive:
            self.notify(str(message.error), title=f"{message.action} failed", severity="error",
                        timeout=10)

    def _show_error(self, text: str | None) -> None:
        status = self.main.query_one(StatusBar)
        status.error = text
        status.error_kind = None if self.error is None else type(self.error).__name__
        status.display_url = self.source.display_url
        self._show_staleness()

    def _show_staleness(self) -> None:
        """Say how old the data on screen is (see :mod:`queuewatch.tui.staleness`)."""
        now = self.clock()
        overdue = self.main.query_one(StatusBar).overdue(now)
        age = poll_age(self.error, self.snapshot, now)
        show_staleness(self.main, self.error, self.snapshot, now, overdue)
        self.main.query_one(QueuesView).show_help(overdue if age is None else age)
        self.main.query_one(DlqView).tick(overdue if age is None else age)
        if isinstance(self.screen, QueueDetailScreen):
            self.screen.show_staleness(overdue if age is None else age,
                                       None if self.error is None else str(self.error))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if self._views_alive:
            self.apply_snapshot(message.snapshot)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Update every view from ``snapshot`` (benchmarks time this call)."""
        self.snapshot = snapshot
        self.polls_done += 1
        main = self.main
        status = main.query_one(StatusBar)
        status.snapshot = snapshot
        status.show()
        main.query_one(QueuesView).apply(snapshot)
        main.query_one(QueuesView).show_help(None)
        for view in main.query(StaleAware):
            view.apply(snapshot)
        main.query_one(DlqView).apply(snapshot)
        main.query_one(AlertsStrip).show_alerts(snapshot.alerts)
        if isinstance(self.screen, QueueDetailScreen):
            self.screen.show(snapshot, self.source.history(self.screen.queue_name))

    def _exit_after(self) -> None:
        if self.screenshot_path:
            path = Path(self.screenshot_path)
            self.save_screenshot(path.name, str(path.parent.resolve()))
        self.exit()

    def _tick(self) -> None:
        if not self._views_alive:
            return
        self.main.query_one(StatusBar).show()
        for view in self.main.query(StaleAware):
            view.tick()
        self._show_staleness()

    # -- actions -------------------------------------------------------------------------
    def action_view(self, view: str) -> None:
        self.main.action_view(view)

    @property
    def active_view(self) -> str:
        return self.main.active_view

    def action_filter(self) -> None:
        self.main.action_filter()

    def action_refresh(self) -> None:
        self.poll_now()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(help_sections()))

    def action_screenshot_to_state(self) -> None:
        """Save an SVG of the screen in the state directory (a server has no Downloads)."""
        folder = self.settings.state_dir / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        path = self.save_screenshot(path=str(folder))
        self.notify(f"screenshot saved to {path}", title="Screenshot", timeout=10)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Ours, then Textual's that we do not replace (its Keys, Quit and Screenshot are)."""
        yield from palette_commands(self)
        for command in super().get_system_commands(screen):
            if command.title not in ("Keys", "Quit", "Screenshot"):
                yield command

    def open_queue(self, name: str) -> None:
        screen = QueueDetailScreen(name, self.source, self.read_only, self.clock)
        self.push_screen(screen)
        if self.snapshot is not None:
            screen.call_after_refresh(screen.show, self.snapshot, self.source.history(name))

    @work(group="vhosts", exit_on_error=False)
    async def action_pick_vhost(self) -> None:
        names = await self.source.vhosts()
        choice = await self.push_screen_wait(PickScreen("Switch vhost", names, self.source.vhost))
        if choice:
            self.action_switch_vhost(choice)

    @work(group="vhosts", exit_on_error=False)
    async def action_check_vhost(self, vhost: str) -> None:
        """``:vhost NAME``: switch only to a vhost the broker has (a typo would otherwise
        leave an empty console polling nothing)."""
        names = await self.source.vhosts()
        if vhost not in names:
            shown = ", ".join(names[:8]) + (f" … ({len(names)} in all)" if len(names) > 8 else "")
            self.notify(f"no vhost named {vhost!r}: {shown}", title="vhost", severity="warning")
            return
        self.action_switch_vhost(vhost)

    def action_switch_vhost(self, vhost: str) -> None:
        if vhost != self.source.vhost:
            self.source.set_vhost(vhost)
            status = self.main.query_one(StatusBar)
            status.vhost, status.snapshot = vhost, None
            self.snapshot = None
            self.main.query_one(DlqView).reset()
            self.poll_now()

    def action_drill(self, kind: str, target: str) -> None:
        self.main.drill(kind, target)

    @work(group="command-bar", exclusive=True, exit_on_error=False)
    async def action_command_bar(self) -> None:
        """``:``: a command (see :mod:`queuewatch.tui.command_bar`), run as its key would."""
        if isinstance(self.screen, ModalScreen):
            return
        commands = offered(view for view, _title in VIEWS)
        queues = [q.name for q in self.snapshot.queues] if self.snapshot else []
        dlqs = [q.name for q in self.snapshot.queues if q.is_dlq] if self.snapshot else []
        text = await self.push_screen_wait(CommandBar(
            commands, completions(commands, {"queues": queues, "dlqs": dlqs})))
        if not text:
            return
        try:
            command, arg = resolve(text, commands)
        except CommandError as exc:
            self.notify(str(exc), severity="warning")
            return
        if command.name not in ("help", "quit"):
            while self.screen is not self.main and len(self.screen_stack) > 1:
                self.pop_screen()
        await self.run_action(action_of(command, arg))

    async def action_quit(self) -> None:
        if self.before_quit is None:
            self.exit()
        elif not any(w.group == "quit" for w in self.workers):
            self._stop_then_exit(self.before_quit)

    @work(group="quit", exit_on_error=False)
    async def _stop_then_exit(self, stop: Callable[[], str | None]) -> None:
        """Run ``stop`` (the demo stops its services) off the event loop, saying so, then quit."""
        self.notify("stopping…", title="Quitting", timeout=30)
        self._exit_requested = True  # no more polls while the link closes
        await asyncio.gather(asyncio.to_thread(stop), self.source.aclose())
        self.exit()

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Plain text by default: notifications carry queue names, job ids and broker errors,
        and a ``[`` in one must show as typed, not be read as Textual markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def exit(self, *args: Any, **kwargs: Any) -> None:
        self._exit_requested = True
        super().exit(*args, **kwargs)

    async def on_unmount(self) -> None:
        await self.source.aclose()
