"""The Workers, Stuck jobs and Alerts views: small tables refreshed from each snapshot.

Their rows follow the order given (worst first); ages are counted from the clock, so they
keep moving while polls fail and the tables are dimmed as stale.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from queuewatch.monitor.model import Snapshot, StuckJob, WorkerStats, fmt_duration
from queuewatch.tui.format import SEVERITY_STYLE, rate, size
from queuewatch.tui.layout import Column
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.widgets.dlq_actions import plural
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.status import heartbeats_lost, stale_text, with_poll_age
from queuewatch.tui.widgets.table_view import DrillDown, TableView

#: State and heartbeat right after the name, never hidden: on an 80-column terminal they are
#: what matters; rates and process details go first.
WORKER_COLUMNS = (
    Column("worker", "Worker", 22, flex=True, min_width=12, max_width=40),
    Column("state", "State", 13), Column("beat", "Heartbeat", 9),
    Column("inflight", "In-flight", 9, 2, right=True), Column("host", "Host", 14, 3),
    Column("errors", "Errors", 6, 4, right=True), Column("jps", "Jobs/s", 7, 5, right=True),
    Column("pid", "PID", 7, 6, right=True), Column("cpu", "CPU%", 5, 6, right=True),
    Column("rss", "RSS", 9, 7, right=True), Column("conc", "Conc", 4, 7, right=True),
    Column("queues", "Queues", 16, 8, flex=True, min_width=8),
)
STUCK_COLUMNS = (
    Column("job", "Job id", 36, flex=True, min_width=12, max_width=40),
    Column("age", "Age", 8, right=True),
    Column("queue", "Queue", 16, 1, flex=True, min_width=10, max_width=40),
    Column("worker", "Worker", 20, 2, flex=True, min_width=12, max_width=40),
    Column("attempt", "Att", 3, 3, right=True), Column("threshold", "Threshold", 9, 4, right=True),
)
ALERT_COLUMNS = (
    Column("severity", "Severity", 8), Column("kind", "Kind", 16, 1),
    Column("target", "Target", 20, flex=True, min_width=12, max_width=40),
    Column("reason", "Reason", 40, flex=True, min_width=24),
)
#: Worst first: the order of the Workers view (then by name).
STATE_RANK = {"hung": 0, "not_consuming": 1, "stale": 2, "unknown": 3, "gone": 4, "up": 5}
#: The State cell for each :data:`~queuewatch.monitor.model.WorkerState` (the CLI's words).
STATE_CELLS = {
    "up": ("ok", "green"), "not_consuming": ("NOT CONSUMING", "bold yellow"),
    "unknown": ("unknown", "dim yellow"), "stale": ("stale", "yellow"), "gone": ("gone", "dim"),
    "hung": ("HUNG", "bold white on red"),
}
SEVERITY_RANK = {"critical": 0, "warning": 1}


def worker_state(w: WorkerStats) -> Text:
    """The State cell: HUNG only for a worker silent while our heartbeat feed was live and
    whose connection the broker still lists (see ``queuewatch.monitor.freshness``)."""
    text, style = STATE_CELLS.get(w.state, (w.state, ""))
    return Text(text, style=style)


def producers_text(snapshot: Snapshot, grown: float = 0.0) -> Text:
    """One line per outbox-enabled producer: its spool's depth and the oldest job's age."""
    t = Text()
    if not snapshot.producers:
        return t
    t.append(" Producers (outbox)\n", style="bold")
    for p in snapshot.producers:
        t.append(f" {p.producer_id}", style="bold")
        t.append(f" on {p.host}: ")
        if p.outbox_depth:
            age = fmt_duration((p.outbox_oldest_age or 0.0) + grown)
            t.append(f"outbox {p.outbox_depth:,} (oldest {age})", style="bold yellow")
            t.append("  draining" if p.draining else
                     ("  blocked by the broker" if p.blocked else "  waiting for the broker"))
        else:
            t.append("outbox empty", style="green")
        if p.heartbeat_state != "fresh":
            t.append(f"  (last heard {fmt_duration(p.heartbeat_age + grown)} ago)", style="dim")
        t.append("\n")
    return t


class StaleAware(TableView):
    """A view of worker-derived data: dimmed, with a note, while heartbeats are lost."""

    HEARTBEAT_DERIVED = True
    """Dimmed while the heartbeat feed is down (the Alerts view only when polls fail)."""

    def __init__(self, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(**kw)
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.summary = ""

    def table(self) -> Widget:
        return self.query_one(KeyedTable)

    def elapsed(self) -> float:
        """Seconds since the snapshot shown was taken (ages shown grow by it)."""
        return 0.0 if self.snapshot is None else self.snapshot.age(self.clock())

    def tick(self) -> None:
        """Each second: ages move on even when no poll succeeds."""
        if self.snapshot is not None:
            self.apply(self.snapshot)

    def apply(self, snapshot: Snapshot) -> None:
        raise NotImplementedError

    def show_staleness(self, now: float | None = None, poll_age: float | None = None) -> None:
        """Refresh the help line (each second: the age in it grows). ``poll_age``: polls fail
        and what is shown is that old."""
        snap = self.snapshot
        lost = None if snap is None or not self.HEARTBEAT_DERIVED else heartbeats_lost(
            snap, self.clock() if now is None else now)
        self.set_class(lost is not None, "stale")
        note = self.summary if lost is None else (
            f" heartbeats {stale_text(lost)}: worker states unknown, nothing is judged hung or "
            "stuck until they are back")
        table = self.query_one(KeyedTable)
        if table.filter_text:
            note += f"  ·  filter '{table.filter_text}' (Esc clears)"
        self.query_one(".view-help", Static).update(with_poll_age(note, poll_age))

    def filter_changed(self) -> None:
        self.show_staleness()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_drill()

    def action_drill(self) -> None:
        """Enter: show what the selected row is about (see :class:`DrillDown`)."""


class WorkersView(StaleAware):
    BINDINGS = [Binding("t", "terminate", "Terminate"), Binding("enter", "drill", "Its stuck jobs")]
    DESTRUCTIVE = frozenset({"terminate"})

    def __init__(self, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(clock, **kw)
        self.worker_stats: dict[str, WorkerStats] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="workers-help", classes="view-help", markup=False)
        yield self.filter_box()
        yield KeyedTable(WORKER_COLUMNS, id="workers-table")
        producers = Static("", id="workers-producers", markup=False)
        producers.display = False  # only when an outbox-enabled producer sends heartbeats
        yield producers

    def apply(self, snapshot: Snapshot) -> None:
        rows = {}
        self.snapshot = snapshot
        grown = self.elapsed()
        self.worker_stats = {w.worker_id: w for w in snapshot.workers}
        for w in sorted(snapshot.workers, key=lambda w: (STATE_RANK.get(w.state, 9), w.worker_id)):
            beat: Text | str = fmt_duration(None if w.heartbeat_age is None
                                            else w.heartbeat_age + grown)
            if w.heartbeat_state == "unknown":
                beat = Text(f"{beat}?", style="dim")
            rows[w.worker_id] = (
                w.worker_id, worker_state(w), beat, str(len(w.in_flight)), w.host,
                str(w.errors), rate(w.jobs_per_second), str(w.pid), f"{w.cpu_percent:.0f}",
                size(w.rss_bytes), str(w.concurrency), ",".join(w.queues),
            )
        self.query_one(KeyedTable).set_rows(rows)
        hung = sum(1 for w in snapshot.workers if w.hung)
        action = ("read-only: terminate is disabled" if self.read_only
                  else "t: terminate a hung local worker")
        self.summary = (f" {plural(len(snapshot.workers), 'worker')}, {hung} hung  ·  {action}  ·  "
                        "Enter: its stuck jobs")
        self.show_staleness()
        producers = self.query_one("#workers-producers", Static)
        producers.display = bool(snapshot.producers)
        producers.update(producers_text(snapshot, grown))

    def action_drill(self) -> None:
        key = self.query_one(KeyedTable).selected_key
        if key:
            self.post_message(DrillDown("worker-jobs", key))

    @work(group="terminate", exclusive=True, exit_on_error=False)
    async def action_terminate(self) -> None:
        if self.refuse("terminate worker"):
            return
        key = self.query_one(KeyedTable).selected_key
        w = self.worker_stats.get(key or "")
        if w is None:
            return
        if w.host != socket.gethostname():
            self.app.notify(f"{w.worker_id} runs on {w.host}, not here: stop it there",
                            severity="warning")
            return
        if not w.hung:
            self.app.notify(f"{w.worker_id} is not hung (it still sends heartbeats)",
                            severity="warning")
            return
        ok = await self.app.push_screen_wait(ConfirmScreen(
            f"Terminate worker {w.worker_id}?",
            f"pid {w.pid} on {w.host} gets SIGTERM, then SIGKILL. Its {len(w.in_flight)} "
            "in-flight jobs are unacked, so RabbitMQ redelivers them to other workers.",
            confirm_label="Terminate",
        ))
        if ok:
            await self.app.source.terminate_worker(w)  # type: ignore[attr-defined]
            self.app.notify(f"terminated {w.worker_id} (pid {w.pid})")


class StuckView(StaleAware):
    BINDINGS = [Binding("c", "cancel_job", "Cancel job"), Binding("enter", "drill", "Its worker"),
                Binding("h", "job_history", "Job timeline")]
    DESTRUCTIVE = frozenset({"cancel_job"})

    def __init__(self, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(clock, **kw)
        self.stuck_jobs: dict[str, StuckJob] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="stuck-help", classes="view-help", markup=False)
        yield self.filter_box()
        yield KeyedTable(STUCK_COLUMNS, id="stuck-table")
        yield Static("", id="stuck-queues", markup=False)

    def apply(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        grown = self.elapsed()
        self.stuck_jobs = {j.job_id: j for j in snapshot.stuck_jobs}
        rows = {
            j.job_id: (
                j.job_id, Text(fmt_duration(j.age + grown), style="bold red", justify="right"),
                j.queue, j.worker_id, str(j.attempt), fmt_duration(j.threshold),
            )
            for j in sorted(snapshot.stuck_jobs, key=lambda j: (-j.age, j.job_id))
        }
        self.query_one(KeyedTable).set_rows(rows)
        action = "read-only: cancel is disabled" if self.read_only else "c: cancel the selected job"
        self.summary = (f" {len(snapshot.stuck_jobs)} stuck jobs, oldest first  ·  {action}  ·  "
                        "Enter: its worker")
        self.show_staleness()
        t = Text()
        t.append(" Stalled (messages + consumers, no acks): ", style="bold")
        t.append(", ".join(snapshot.stalled_queues) or "none", style="yellow")
        t.append("\n Orphaned (messages, no consumers): ", style="bold")
        t.append(", ".join(snapshot.orphaned_queues) or "none", style="yellow")
        self.query_one("#stuck-queues", Static).update(t)

    def action_drill(self) -> None:
        job = self.stuck_jobs.get(self.query_one(KeyedTable).selected_key or "")
        if job is not None:
            self.post_message(DrillDown("worker", job.worker_id))

    def action_job_history(self) -> None:
        job = self.stuck_jobs.get(self.query_one(KeyedTable).selected_key or "")
        if job is not None:
            self.post_message(DrillDown("job", job.job_id))

    @work(group="cancel", exclusive=True, exit_on_error=False)
    async def action_cancel_job(self) -> None:
        if self.refuse("cancel job"):
            return
        job = self.stuck_jobs.get(self.query_one(KeyedTable).selected_key or "")
        if job is None:
            return
        ok = await self.app.push_screen_wait(ConfirmScreen(
            f"Cancel job {job.job_id}?",
            f"Running for {fmt_duration(job.age + self.elapsed())} on {job.worker_id} (queue "
            f"{job.queue}, attempt {job.attempt}). The worker stops it and parks it in "
            f"{job.queue}.dlq as 'cancelled by operator'; you can replay it from there.",
            confirm_label="Cancel the job", keep_label="Keep it running",
        ))
        if ok:
            await self.app.source.cancel_job(job)  # type: ignore[attr-defined]
            self.app.notify(f"cancel sent to {job.worker_id} for job {job.job_id}")


class AlertsView(StaleAware):
    """Every active alert, critical first; Enter shows its target."""

    BINDINGS = [Binding("enter", "drill", "Show target")]
    HEARTBEAT_DERIVED = False

    def compose(self) -> ComposeResult:
        yield Static("", id="alerts-help", classes="view-help", markup=False)
        yield self.filter_box()
        yield KeyedTable(ALERT_COLUMNS, wrap=True, id="alerts-table")

    def apply(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        rows: dict[str, tuple[Text | str, ...]] = {}
        self.kinds: dict[str, tuple[str, str]] = {}
        order = sorted(snapshot.alerts, key=lambda a: (SEVERITY_RANK.get(a.severity, 2), a.kind,
                                                       a.target))
        for a in order:
            style = SEVERITY_STYLE.get(a.severity, "")
            key = f"{a.kind}:{a.target}"
            while key in rows:
                key += "+"
            self.kinds[key] = (a.kind, a.target)
            rows[key] = (Text(a.severity, style=style), a.kind, Text(a.target, style=style),
                         Text(a.reason))
        self.query_one(KeyedTable).set_rows(rows)
        crit = sum(1 for a in snapshot.alerts if a.severity == "critical")
        self.summary = (f" {len(snapshot.alerts)} alerts ({crit} critical), critical first  ·  "
                        "Enter: show its target")
        self.show_staleness()

    def action_drill(self) -> None:
        kind_target = self.kinds.get(self.query_one(KeyedTable).selected_key or "")
        if kind_target is not None:
            self.post_message(DrillDown(*kind_target))
