"""The Busy view (every job running now, from worker heartbeats) and the Scheduled/Retries
view (jobs waiting in delay levels for their time, from the job events).

Busy reads the snapshot every other view reads (fresh beats only: while our heartbeat feed is
down, what runs is unknown). Scheduled reads the job events index through the data source
while it is shown — never the delay queues themselves, whose reads would mark every waiting
message redelivered — and says so when job events are off or cannot be read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from queuewatch.errors import QueuewatchError
from queuewatch.jobs.state import JobState, JobStatus
from queuewatch.monitor.busy import BusyJob, busy_jobs, not_heard
from queuewatch.monitor.model import Snapshot, fmt_duration
from queuewatch.tui.layout import Column
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.table_view import DrillDown
from queuewatch.tui.widgets.views import StaleAware

if TYPE_CHECKING:
    from queuewatch.tui.source import DataSource

BUSY_COLUMNS = (
    Column("job", "Job id", 36, flex=True, min_width=22, max_width=40),
    Column("running", "Running", 8, right=True),
    Column("queue", "Queue", 16, 1, flex=True, min_width=10, max_width=40),
    Column("worker", "Worker", 20, 2, flex=True, min_width=12, max_width=40),
    Column("attempt", "Att", 3, 3, right=True), Column("host", "Host", 14, 4),
)
SCHEDULED_COLUMNS = (
    Column("due", "Due in", 10, right=True),
    Column("job", "Job id", 36, flex=True, min_width=12, max_width=40),
    Column("queue", "Queue", 16, flex=True, min_width=10, max_width=40),
    Column("kind", "Kind", 7),
    Column("attempt", "Next", 4, 1, right=True),
    Column("at", "Due at (UTC)", 12, 2, right=True),
    Column("error", "Last error", 30, 3, flex=True, min_width=16),
)
#: At most this many waiting jobs are listed (soonest first).
SCHEDULED_LIMIT = 500
#: The kind of wait, as the view says it.
KINDS = {JobState.RETRYING: ("retry", "yellow"), JobState.SCHEDULED: ("delayed", "cyan")}


class BusyView(StaleAware):
    """Every in-flight job across workers, longest running first; Enter: its timeline."""

    BINDINGS = [Binding("enter", "drill", "Job timeline")]

    def __init__(self, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(clock, **kw)
        self.jobs: dict[str, BusyJob] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="busy-help", classes="view-help", markup=False)
        yield self.filter_box()
        yield KeyedTable(BUSY_COLUMNS, id="busy-table")

    def apply(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        grown = self.elapsed()
        jobs = busy_jobs(snapshot.workers, snapshot.taken_at)
        self.jobs = {}
        rows: dict[str, tuple[Text | str, ...]] = {}
        for b in jobs:
            key = f"{b.job_id}@{b.worker_id}"  # the same id twice: a redelivered duplicate
            self.jobs[key] = b
            rows[key] = (b.job_id, Text(fmt_duration(b.running_for + grown), justify="right"),
                         b.queue, b.worker_id, str(b.attempt), b.host)
        self.query_one(KeyedTable).set_rows(rows)
        if not snapshot.workers_known:
            self.summary = " in-flight jobs unknown: the heartbeat feed is not live"
        else:
            silent = not_heard(snapshot)
            extra = (f"  ·  not listed: the jobs of {silent} worker{'s' if silent > 1 else ''} "
                     "not heard lately") if silent else ""
            self.summary = f" {len(jobs)} running, longest first  ·  Enter: timeline{extra}"
        self.show_staleness()

    def action_drill(self) -> None:
        job = self.jobs.get(self.query_one(KeyedTable).selected_key or "")
        if job is not None:
            self.post_message(DrillDown("job", job.job_id))


def next_attempt(s: JobStatus) -> int:
    """The attempt the job runs as when it comes up (a retry: the one after the failed one)."""
    return s.attempt + 1 if s.state is JobState.RETRYING else max(s.attempt, 1)


def due_cells(s: JobStatus, now: float) -> tuple[Text, str]:
    """``Due in`` (``late 3s`` once past: due, and no worker has started it yet) and the due
    time of day (UTC)."""
    if s.due_ms is None:
        return Text("?", justify="right"), "?"
    left = s.due_ms / 1000 - now
    due = (Text(fmt_duration(left), justify="right") if left >= 0
           else Text(f"late {fmt_duration(-left)}", style="yellow", justify="right"))
    return due, time.strftime("%H:%M:%S", time.gmtime(s.due_ms / 1000))


class ScheduledView(StaleAware):
    """Jobs waiting for their time (delayed or retrying), soonest first; ``c`` cancels and
    ``n`` runs now the highlighted one (confirmed, audited by the core, refused read-only)."""

    BINDINGS = [Binding("c", "cancel_scheduled", "Cancel job"), Binding("n", "run_now", "Run now"),
                Binding("enter", "drill", "Job timeline"), Binding("l", "reload", "Reload")]
    DESTRUCTIVE = frozenset({"cancel_scheduled", "run_now"})
    HEARTBEAT_DERIVED = False

    def __init__(self, source: DataSource, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(clock, **kw)
        self.source = source
        self.statuses: list[JobStatus] = []
        self.by_id: dict[str, JobStatus] = {}
        self.read_at: float | None = None
        self.problem: str | None = None
        """Why nothing can be listed (job events off or unreadable)."""
        self.active = False

    def compose(self) -> ComposeResult:
        yield Static("", id="scheduled-help", classes="view-help", markup=False)
        yield self.filter_box()
        yield KeyedTable(SCHEDULED_COLUMNS, id="scheduled-table")

    # -- shown / hidden ------------------------------------------------------------------
    def opened(self) -> None:
        self.active = True
        self.reload()

    def closed(self) -> None:
        self.active = False

    def apply(self, snapshot: Snapshot) -> None:
        """Each poll: read the job events again while the view is shown (hidden, it does
        nothing: its "due in" cells would be redrawn every second for no one)."""
        self.snapshot = snapshot
        if not self.active:
            return
        if not any(w.group == "scheduled" and w.is_running for w in self.workers):
            self.reload()
        self.render_rows()

    def tick(self) -> None:
        if self.active:
            self.render_rows()

    def action_reload(self) -> None:
        self.reload()

    @work(group="scheduled", exclusive=True, exit_on_error=False)
    async def reload(self) -> None:
        try:
            statuses = await self.source.scheduled_jobs(SCHEDULED_LIMIT)
        except QueuewatchError as exc:
            self.problem = str(exc)
            self.statuses, self.by_id = [], {}
        else:
            self.problem = None
            self.statuses = sorted(statuses, key=lambda s: (s.due_ms is None, s.due_ms or 0,
                                                            s.job_id))
            self.by_id = {s.job_id: s for s in self.statuses}
        self.read_at = self.clock()
        self.render_rows()

    def render_rows(self) -> None:
        now = self.clock()
        rows: dict[str, tuple[Text | str, ...]] = {}
        for s in self.statuses:
            kind, style = KINDS.get(s.state, (s.state.value, ""))
            due, at = due_cells(s, now)
            rows[s.job_id] = (due, s.job_id, s.queue or "?", Text(kind, style=style),
                              str(next_attempt(s)), at, s.error or "")
        self.query_one(KeyedTable).set_rows(rows)
        if self.problem is not None:
            self.summary = f" scheduled jobs unknown: {self.problem}"
        elif self.read_at is None:
            self.summary = " reading the job events…"
        else:
            per_queue: dict[str, int] = {}
            for s in self.statuses:
                per_queue[s.queue or "?"] = per_queue.get(s.queue or "?", 0) + 1
            counts = ", ".join(f"{q} {n}" for q, n in sorted(per_queue.items()))
            action = ("read-only: cancel and run-now disabled" if self.read_only
                      else "c cancel  n run now")
            self.summary = (f" {len(self.statuses)} waiting, soonest first  ·  {action}  ·  "
                            f"job events read {fmt_duration(now - self.read_at)} ago"
                            f"{f'  ·  {counts}' if counts else ''}")
        self.show_staleness()

    def selected(self) -> JobStatus | None:
        return self.by_id.get(self.query_one(KeyedTable).selected_key or "")

    def action_drill(self) -> None:
        job = self.selected()
        if job is not None:
            self.post_message(DrillDown("job", job.job_id))

    # -- actions -------------------------------------------------------------------------
    def _describe(self, job: JobStatus) -> str:
        kind, _ = KINDS.get(job.state, (job.state.value, ""))
        due, at = due_cells(job, self.clock())
        return (f"{kind} job for queue {job.queue} (attempt {next_attempt(job)}), due in "
                f"{due.plain} at {at} UTC.")

    @work(group="cancel-scheduled", exclusive=True, exit_on_error=False)
    async def action_cancel_scheduled(self) -> None:
        if self.refuse("cancel job"):
            return
        job = self.selected()
        if job is None:
            return
        ok = await self.app.push_screen_wait(ConfirmScreen(
            f"Cancel job {job.job_id}?",
            f"A {self._describe(job)} Workers skip it when it comes up and its status says "
            "'cancelled' at once; it is not dead-lettered (nothing to replay). Written to the "
            "audit log.",
            confirm_label="Cancel the job", keep_label="Keep it",
        ))
        if ok:
            detail = await self.source.cancel_scheduled(job.job_id)
            self.app.notify(f"cancelled: {detail}")
            self.reload()

    @work(group="run-now", exclusive=True, exit_on_error=False)
    async def action_run_now(self) -> None:
        if self.refuse("run now"):
            return
        job = self.selected()
        if job is None:
            return
        if job.state is not JobState.SCHEDULED:
            self.app.notify(f"job {job.job_id} waits for a retry: only a delayed job can run "
                            "now (c cancels it)", severity="warning")
            return
        ok = await self.app.push_screen_wait(ConfirmScreen(
            f"Run job {job.job_id} now?",
            f"A {self._describe(job)} It is published to {job.queue} now (same job id) and its "
            "delayed copy is skipped when it comes up. Written to the audit log.",
            confirm_label="Run it now", keep_label="Keep waiting",
        ))
        if ok:
            detail = await self.source.run_now(job.job_id)
            self.app.notify(detail)
            self.reload()
