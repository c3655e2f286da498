"""The Workers, Stuck jobs and Alerts views: small tables refreshed from each snapshot."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from queuewatch.errors import ReadOnlyError
from queuewatch.monitor.model import Snapshot, StuckJob, WorkerStats, fmt_duration
from queuewatch.tui.format import SEVERITY_STYLE, rate, size
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.status import heartbeats_lost, stale_text, with_poll_age

#: State and heartbeat right after the name: on an 80-column terminal they are what matters.
WORKER_COLUMNS = (
    ("worker", "Worker", 22), ("state", "State", 13), ("beat", "Heartbeat", 10),
    ("host", "Host", 14), ("pid", "PID", 7), ("cpu", "CPU%", 6), ("rss", "RSS", 9),
    ("conc", "Conc", 5), ("inflight", "In-flight", 9), ("jps", "Jobs/s", 7),
    ("errors", "Errors", 6), ("queues", "Queues", 0),
)
STUCK_COLUMNS = (
    ("job", "Job id", 34), ("queue", "Queue", 20), ("worker", "Worker", 22),
    ("attempt", "Attempt", 7), ("age", "Age", 8), ("threshold", "Threshold", 9),
)
ALERT_COLUMNS = (
    ("severity", "Severity", 9), ("kind", "Kind", 16), ("target", "Target", 24),
    ("reason", "Reason", 0),
)


class ActionView(Vertical):
    """A view with one destructive action, greyed out (and refused) in read-only mode."""

    DESTRUCTIVE: frozenset[str] = frozenset()

    @property
    def read_only(self) -> bool:
        return bool(getattr(self.app, "read_only", False))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action in self.DESTRUCTIVE and self.read_only else True

    def refuse(self, action: str) -> bool:
        if self.read_only:
            self.app.notify(str(ReadOnlyError(action)), severity="warning")
        return self.read_only

    @property
    def source(self) -> Any:
        return getattr(self.app, "source", None)


#: The State cell for each :data:`~queuewatch.monitor.model.WorkerState` (the CLI's words).
STATE_CELLS = {
    "up": ("ok", "green"), "not_consuming": ("NOT CONSUMING", "bold yellow"),
    "unknown": ("unknown", "dim yellow"), "stale": ("stale", "yellow"), "gone": ("gone", "dim"),
    "hung": ("HUNG", "bold red"),
}


def worker_state(w: WorkerStats) -> Text:
    """The State cell: HUNG only for a worker silent while our heartbeat feed was live and
    whose connection the broker still lists (see ``queuewatch.monitor.freshness``)."""
    text, style = STATE_CELLS.get(w.state, (w.state, ""))
    return Text(text, style=style)


class StaleAware(ActionView):
    """A view of worker-derived data: dimmed, with a note, while heartbeats are lost."""

    def __init__(self, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(**kw)
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.summary = ""

    def show_staleness(self, now: float | None = None, poll_age: float | None = None) -> None:
        """Refresh the help line (each second: the age in it grows). ``poll_age``: polls fail
        and what is shown is that old."""
        snap = self.snapshot
        lost = None if snap is None else heartbeats_lost(snap, self.clock() if now is None else now)
        self.set_class(lost is not None, "stale")
        note = self.summary if lost is None else (
            f" heartbeats {stale_text(lost)}: worker states unknown, nothing is judged hung or "
            "stuck until they are back")
        self.query_one(".view-help", Static).update(with_poll_age(note, poll_age))


class WorkersView(StaleAware):
    BINDINGS = [Binding("t", "terminate", "Terminate worker")]
    DESTRUCTIVE = frozenset({"terminate"})

    def __init__(self, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(clock, **kw)
        self.worker_stats: dict[str, WorkerStats] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="workers-help", classes="view-help")
        yield KeyedTable(WORKER_COLUMNS, id="workers-table")

    def apply(self, snapshot: Snapshot, read_only: bool) -> None:
        rows = {}
        self.snapshot = snapshot
        self.worker_stats = {w.worker_id: w for w in snapshot.workers}
        for w in snapshot.workers:
            beat: Text | str = fmt_duration(w.heartbeat_age)
            if w.heartbeat_state == "unknown":
                beat = Text(f"{beat}?", style="dim")
            rows[w.worker_id] = (
                w.worker_id, worker_state(w), beat, w.host, str(w.pid), f"{w.cpu_percent:.0f}",
                size(w.rss_bytes), str(w.concurrency), str(len(w.in_flight)),
                rate(w.jobs_per_second), str(w.errors), ",".join(w.queues),
            )
        self.query_one(KeyedTable).set_rows(rows)
        hung = sum(1 for w in snapshot.workers if w.hung)
        action = "read-only: terminate is disabled" if read_only else "t: terminate a hung local worker"
        self.summary = f" {len(snapshot.workers)} workers, {hung} hung  ·  {action}"
        self.show_staleness()


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
            await self.source.terminate_worker(w)
            self.app.notify(f"terminated {w.worker_id} (pid {w.pid})")


class StuckView(StaleAware):
    BINDINGS = [Binding("c", "cancel_job", "Cancel job")]
    DESTRUCTIVE = frozenset({"cancel_job"})

    def __init__(self, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(clock, **kw)
        self.stuck_jobs: dict[str, StuckJob] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="stuck-help", classes="view-help")
        yield KeyedTable(STUCK_COLUMNS, id="stuck-table")
        yield Static("", id="stuck-queues")

    def apply(self, snapshot: Snapshot, read_only: bool) -> None:
        self.snapshot = snapshot
        self.stuck_jobs = {j.job_id: j for j in snapshot.stuck_jobs}
        rows = {
            j.job_id: (
                j.job_id, j.queue, j.worker_id, str(j.attempt),
                Text(fmt_duration(j.age), style="bold red"), fmt_duration(j.threshold),
            )
            for j in snapshot.stuck_jobs
        }
        self.query_one(KeyedTable).set_rows(rows)
        action = "read-only: cancel is disabled" if read_only else "c: cancel the selected job"
        self.summary = f" {len(snapshot.stuck_jobs)} stuck jobs  ·  {action}"
        self.show_staleness()
        t = Text()
        t.append(" Stalled (messages + consumers, no acks): ", style="bold")
        t.append(", ".join(snapshot.stalled_queues) or "none", style="yellow")
        t.append("\n Orphaned (messages, no consumers): ", style="bold")
        t.append(", ".join(snapshot.orphaned_queues) or "none", style="yellow")
        self.query_one("#stuck-queues", Static).update(t)


    @work(group="cancel", exclusive=True, exit_on_error=False)
    async def action_cancel_job(self) -> None:
        if self.refuse("cancel job"):
            return
        job = self.stuck_jobs.get(self.query_one(KeyedTable).selected_key or "")
        if job is None:
            return
        ok = await self.app.push_screen_wait(ConfirmScreen(
            f"Cancel job {job.job_id}?",
            f"Running for {fmt_duration(job.age)} on {job.worker_id} (queue {job.queue}, attempt "
            f"{job.attempt}). The worker stops it and parks it in the DLQ as 'cancelled by "
            "operator'; you can replay it from there.",
            confirm_label="Cancel job",
        ))
        if ok:
            await self.source.cancel_job(job)
            self.app.notify(f"cancel sent to {job.worker_id} for job {job.job_id}")


class AlertsView(Vertical):
    def compose(self) -> ComposeResult:
        yield KeyedTable(ALERT_COLUMNS, id="alerts-table")

    def apply(self, snapshot: Snapshot, read_only: bool) -> None:
        rows = {}
        for a in sorted(snapshot.alerts, key=lambda a: (a.severity != "critical", a.kind, a.target)):
            style = SEVERITY_STYLE.get(a.severity, "")
            key = f"{a.kind}:{a.target}"
            while key in rows:
                key += "+"
            rows[key] = (
                Text(a.severity, style=style), a.kind, a.target, a.reason,
            )
        self.query_one(KeyedTable).set_rows(rows)
