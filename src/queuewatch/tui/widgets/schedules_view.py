"""The Schedules view (key 8): every recurring job with its timing, state, last run and that
run's outcome, next run, and which scheduler leads ("no scheduler running" in the warning
colour). ``a`` adds, ``e`` changes, ``p`` pauses or resumes, ``x`` removes: each is
confirmed first, refused under --read-only and audited, through the same core function as
``queuewatch schedules ...``. It reads only while shown (then every poll interval)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static

from queuewatch.errors import QueuewatchError
from queuewatch.monitor.model import fmt_duration
from queuewatch.schedules.changes import WARNING, ScheduleChange
from queuewatch.schedules.view import ScheduleListing, ScheduleView
from queuewatch.tui.layout import Column
from queuewatch.tui.schedules_source import SchedulesSource
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.screens.schedule_edit import ScheduleEditScreen
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.table_view import TableView

SCHEDULE_COLUMNS = (
    Column("name", "Schedule", 16, flex=True, min_width=13, max_width=32),
    Column("state", "State", 6),
    Column("when", "When", 22, 2, flex=True, min_width=13, max_width=40),
    Column("last", "Last run", 10), Column("outcome", "Outcome", 13),
    Column("next", "Next run", 9, right=True),
    Column("queue", "Queue", 14, 3, flex=True, min_width=8, max_width=30),
    Column("missed", "Missed", 9, 4),
)
#: The Outcome cell's style for each job state (the CLI's words).
OUTCOME_STYLE = {"succeeded": "green", "failed": "bold red", "dead_lettered": "bold red",
                 "retrying": "yellow", "running": "cyan", "queued": "", "cancelled": "dim",
                 "unknown": "dim yellow"}
#: Seconds between reads while the view is shown (at least the poll interval).
REFRESH = 5.0


def _last_run(v: ScheduleView, now_ms: int) -> str:
    if v.last_tick_ms is None:
        return "never"
    age = (now_ms - v.last_tick_ms) / 1000
    if age < 86_400:
        return f"{fmt_duration(max(age, 0))} ago"
    return datetime.fromtimestamp(v.last_tick_ms / 1000, UTC).strftime("%m-%d %H:%M")


def _next_run(v: ScheduleView, now_ms: int) -> Text:
    if v.paused:
        return Text("paused", style="dim")
    if v.next_ms is None:
        return Text("never", style="dim")
    return Text(f"in {fmt_duration(max((v.next_ms - now_ms) / 1000, 0))}")


def schedule_rows(listing: ScheduleListing, now_ms: int) -> dict[str, tuple[Any, ...]]:
    """One row per schedule (pure: unit-tested and snapshot-tested)."""
    rows: dict[str, tuple[Any, ...]] = {}
    for v in listing.schedules:
        outcome = v.outcome or ("-" if v.last_job is None else "not known")
        rows[v.name] = (
            v.name,
            Text("paused", style="yellow") if v.paused else Text("active", style="green"),
            v.when, _last_run(v, now_ms), Text(outcome, style=OUTCOME_STYLE.get(outcome, "")),
            _next_run(v, now_ms), v.queue, v.missed,
        )
    return rows


class SchedulesView(TableView):
    BINDINGS = [
        Binding("a", "add", "Add"), Binding("e", "edit", "Change"),
        Binding("p", "toggle_pause", "Pause/resume"), Binding("x", "remove", "Remove"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]
    DESTRUCTIVE = frozenset({"add", "edit", "toggle_pause", "remove"})

    def __init__(self, schedules: SchedulesSource, clock: Callable[[], float], *,
                 interval: float = REFRESH, **kw: Any) -> None:
        super().__init__(**kw)
        self.schedules = schedules
        self.clock = clock
        self.interval = max(interval, 1.0)
        self.listing: ScheduleListing | None = None
        self.active = False
        self._timer: Timer | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="schedules-help", classes="view-help", markup=False)
        yield Static("", id="schedules-leader", markup=False)
        yield self.filter_box()
        yield KeyedTable(SCHEDULE_COLUMNS, id="schedules-table")

    def table(self) -> Widget:
        return self.query_one(KeyedTable)

    # -- reading ---------------------------------------------------------------------------
    def opened(self) -> None:
        """Shown: read now, then every :attr:`interval` while shown."""
        self.active = True
        self.action_reload()
        if self._timer is None:
            self._timer = self.set_interval(self.interval, self._tick)

    def closed(self) -> None:
        self.active = False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    async def on_unmount(self) -> None:
        self.closed()
        await self.schedules.aclose()

    def _tick(self) -> None:
        if self.active and not any(w.group == "schedules-read" and w.is_running
                                   for w in self.workers):
            self.action_reload()

    @work(group="schedules-read", exclusive=True, exit_on_error=False)
    async def action_reload(self) -> None:
        try:
            listing = await self.schedules.listing()
        except (QueuewatchError, TimeoutError) as exc:  # said in the view, read again later
            self.error = str(exc) or type(exc).__name__
            self.show()
            return
        self.error = None
        self.show(listing)

    def show(self, listing: ScheduleListing | None = None) -> None:
        if listing is not None:
            self.listing = listing
        now = int(self.clock() * 1000)
        listing = self.listing
        table = self.query_one(KeyedTable)
        if listing is not None:
            table.set_rows(schedule_rows(listing, now))
        leader = Text(" Scheduler: ", style="bold")
        if listing is None:
            leader.append("reading the schedules…", style="dim")
        elif listing.leader_running is False:
            leader.append("no scheduler running", style="bold yellow")
            leader.append(" — no tick fires (start `queuewatch scheduler`)", style="yellow")
        else:
            leader.append(listing.leader_text,
                          style="green" if listing.leader_running else "yellow")
            if listing.leader_running:
                leader.append(" leads", style="green")
        self.query_one("#schedules-leader", Static).update(leader)
        n = 0 if listing is None else len(listing.schedules)
        paused = 0 if listing is None else sum(v.paused for v in listing.schedules)
        actions = ("read-only: changes are disabled" if self.read_only
                   else "a add · e change · p pause/resume · x remove")
        note = f" {n} schedules, {paused} paused  ·  {actions}"
        if self.error:
            note = f" schedules not read: {self.error}"
        filt = table.filter_text
        if filt:
            note += f"  ·  filter '{filt}' (Esc clears)"
        help_line = self.query_one("#schedules-help", Static)
        help_line.update(Text(note, style="bold red" if self.error else ""))

    def filter_changed(self) -> None:
        self.show()

    def selected(self) -> ScheduleView | None:
        key = self.query_one(KeyedTable).selected_key
        if self.listing is None or key is None:
            return None
        return next((v for v in self.listing.schedules if v.name == key), None)

    # -- changes ---------------------------------------------------------------------------
    def action_add(self) -> None:
        if not self.refuse("add schedule"):
            self._edit(None)

    def action_edit(self) -> None:
        if self.refuse("change schedule"):
            return
        v = self.selected()
        if v is not None:
            self._edit(v)

    @work(group="schedules-change", exclusive=True, exit_on_error=False)
    async def _edit(self, v: ScheduleView | None) -> None:
        current = None if v is None else v.schedule
        change = await self.app.push_screen_wait(ScheduleEditScreen(current))
        if change is not None:
            await self._confirm_and_apply(change, current)

    @work(group="schedules-change", exclusive=True, exit_on_error=False)
    async def action_toggle_pause(self) -> None:
        if self.refuse("pause schedule"):
            return
        v = self.selected()
        if v is not None:
            await self._confirm_and_apply(
                ScheduleChange("resume" if v.paused else "pause", v.name), v.schedule)

    @work(group="schedules-change", exclusive=True, exit_on_error=False)
    async def action_remove(self) -> None:
        if self.refuse("remove schedule"):
            return
        v = self.selected()
        if v is not None:
            await self._confirm_and_apply(ScheduleChange("remove", v.name), v.schedule)

    async def _confirm_and_apply(self, change: ScheduleChange, current: Any) -> None:
        verb = {"add": "Add", "change": "Change", "pause": "Pause", "resume": "Resume",
                "remove": "Remove"}[change.action]
        if change.action == "add" and current is None and self.listing is not None:
            current = next((v.schedule for v in self.listing.schedules
                            if v.name == change.name), None)
        ok = await self.app.push_screen_wait(ConfirmScreen(
            f"{verb} schedule {change.name}?", change.describe(current) + "\n\nWritten to "
            "the audit log; every scheduler applies it within a moment.",
            confirm_label=verb))
        if not ok:
            return
        done = await self.schedules.change(change)
        self.app.notify(done, title="Schedules",
                        severity="warning" if WARNING in done else "information")
        self.action_reload()
