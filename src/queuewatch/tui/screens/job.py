"""A job's timeline by id (from the job events), and the prompt that asks for the id.

The screen gets a ``fetch(job_id)`` coroutine from its opener (the data source), never the
app: the same text as ``queuewatch jobs show`` (:func:`queuewatch.jobs.timeline.render`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from queuewatch.errors import QueuewatchError
from queuewatch.jobs.state import JobStatus
from queuewatch.jobs.timeline import render
from queuewatch.tui.widgets.footer import PinnedFooter

Fetch = Callable[[str], Awaitable[JobStatus]]


class JobScreen(ModalScreen[None]):
    """The status and timeline of one job; ``r`` reads it again, ``t`` shows tracebacks."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Close"),
        Binding("r", "refresh_job", "Refresh"),
        Binding("t", "toggle_tracebacks", "Tracebacks"),
    ]

    def __init__(self, job_id: str, fetch: Fetch) -> None:
        super().__init__()
        self.job_id = job_id
        self.fetch = fetch
        self.tracebacks = False
        self.status: JobStatus | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Job {self.job_id}", id="dialog-title", markup=False)
            with VerticalScroll(id="job-timeline"):
                yield Static(f"reading the job events of {self.job_id} ...", id="job-text", markup=False)
        yield PinnedFooter()

    def on_mount(self) -> None:
        self.action_refresh_job()

    def action_refresh_job(self) -> None:
        self._load()

    def action_toggle_tracebacks(self) -> None:
        self.tracebacks = not self.tracebacks
        self._show()

    @work(exclusive=True, group="job")
    async def _load(self) -> None:
        text = self.query_one("#job-text", Static)
        try:
            self.status = await self.fetch(self.job_id)
        except QueuewatchError as exc:
            text.update(f"could not read job {self.job_id}: {exc}")
            return
        self._show()

    def _show(self) -> None:
        if self.status is not None:
            self.query_one("#job-text", Static).update(render(self.status, tracebacks=self.tracebacks))


class JobPrompt(ModalScreen[str | None]):
    """Ask for a job id; Enter opens it, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Find a job by id", id="dialog-title", markup=False)
            yield Input(placeholder="job id", id="job-id")
        yield PinnedFooter()

    def on_mount(self) -> None:
        self.query_one("#job-id", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self.dismiss(value or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
