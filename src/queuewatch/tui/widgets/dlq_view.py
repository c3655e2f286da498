"""The DLQ browser: pick a DLQ, list and filter its dead letters, inspect, mark, replay, delete.

Looking never loses anything: the list comes from the source's ``peek_dlq`` (the DLQ core
reads and requeues). A read marks every dead letter redelivered, so the browser reads when
asked (``l``, opening the view, picking a DLQ) and when the depth changed, at most every
:data:`AUTO_RELOAD_EVERY` seconds. Replay, delete and export are in
:mod:`~queuewatch.tui.widgets.dlq_actions`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, ProgressBar, Static

from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import DeadLetter
from queuewatch.errors import ReadOnlyError
from queuewatch.monitor.model import Snapshot, fmt_duration
from queuewatch.tui.failures import ReportsFailures
from queuewatch.tui.screens.dialogs import PickScreen
from queuewatch.tui.source import DataSource
from queuewatch.tui.widgets.dead_letter import DLQ_COLUMNS, detail_text, letter_row
from queuewatch.tui.widgets.dlq_actions import DlqActions, dead_letter_key, parse_filter
from queuewatch.tui.widgets.dlq_causes import CauseMode, CauseTable
from queuewatch.tui.widgets.keyed_table import KeyedTable
from queuewatch.tui.widgets.table_view import DrillDown

#: How many dead letters the browser reads at once.
PEEK_LIMIT = 500
#: Seconds between automatic re-reads while the depth moves (``l`` reads at once).
AUTO_RELOAD_EVERY = 30.0
#: Below this width the detail pane goes under the list instead of beside it.
NARROW = 110
DESTRUCTIVE = {"replay_selected", "replay_filtered", "delete_selected"}


class DlqView(CauseMode, DlqActions, ReportsFailures, Vertical):
    # The footer lists them in this order, the replay workflow first: at 80 columns
    # (compact) the keys up to "d Delete" fit; the others are under ? and :.
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "leave_filter", "Leave filter", show=False),
        Binding("r", "replay_selected", "Replay", tooltip="Replay the marked dead letters "
                "(or the one under the cursor)"),
        Binding("R", "replay_filtered", "Replay filter", tooltip="Replay every dead letter "
                "the filter shows"),
        Binding("space", "mark", "Mark"),
        Binding("d", "delete_selected", "Delete", tooltip="Delete the marked dead letters "
                "(or the one under the cursor)"),
        Binding("a", "mark_all", "Mark all"),
        Binding("p", "pick_dlq", "Pick DLQ"),
        Binding("e", "export", "Export"),
        Binding("b", "by_cause", "By cause"),
        Binding("h", "job_history", "Timeline", tooltip="The job's timeline"),
        Binding("l", "reload", "Reload"),
    ]

    def __init__(self, source: DataSource, read_only: bool, clock: Callable[[], float],
                 **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.source = source
        self.read_only = read_only
        self.clock = clock
        self.dlq: str | None = None
        self.dlqs: list[str] = []
        self.letters: dict[str, DeadLetter] = {}
        self.marked: set[str] = set()
        self.filter = DeadLetterFilter()
        self.user_picked = False
        """Once the user picked a DLQ, the view stops following the busiest one."""
        self._loading = False
        self._busy = False
        self._reload_pending = False
        self.depth: int | None = None
        """The DLQ's depth in the latest snapshot."""
        self.read_depth: int | None = None
        self.read_count: int | None = None
        """How many dead letters a whole read found (None: filtered, capped or none)."""
        self.read_at: float | None = None
        """The depth when the list was last read, and when (None: not read yet)."""
        self.active = False
        self.gone = False
        """The DLQ shown is not in the latest poll: deleted (its list was cleared)."""
        self.stale_age: float | None = None
        """While polls fail (or one hangs): how old the depth in the title is."""

    def compose(self) -> ComposeResult:
        yield Static(" no DLQ selected: press p to pick one", id="dlq-title", markup=False)
        yield Input(placeholder="filter: text, type:ValueError, reason:failed (Enter applies)",
                    id="dlq-filter")
        with Horizontal(id="dlq-body"):
            yield KeyedTable(DLQ_COLUMNS, id="dlq-table")
            yield CauseTable(id="dlq-causes")
            with VerticalScroll(id="dlq-detail-pane"):
                yield Static("", id="dlq-detail", markup=False)
        yield ProgressBar(id="dlq-progress", show_eta=False)
        yield Static("", id="dlq-help", classes="view-help", markup=False)

    def on_mount(self) -> None:
        self._help()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW, "narrow")

    def _help(self, extra: str = "") -> None:
        actions = ("read-only: replay, delete are disabled" if self.read_only else
                   "r replay the cause · d delete it · Enter its list · b the list" if self.by_cause
                   else "space mark · r replay marked · R replay filtered · d delete marked")
        text = (f" {len(self.letters)} shown · {len(self.marked)} marked · {actions} · e export"
                " · / filter · l reload · p pick" + ("" if self.by_cause else " · b by cause"))
        self.query_one("#dlq-help", Static).update(text + (f" · {extra}" if extra else ""))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_filter":
            return bool(self.query_one("#dlq-filter", Input).has_focus
                        or self.query_one("#dlq-detail-pane").has_focus)
        if action in DESTRUCTIVE and self.read_only:
            return None
        return True

    # -- snapshot ------------------------------------------------------------------------
    def apply(self, snapshot: Snapshot) -> None:
        """Follow the snapshot: the DLQ list, the depth in the title, a reload when it moved."""
        # One pass, and depths of the DLQs only (and of the one shown, whatever it is): a dict
        # of every queue cost 20 ms per refresh at 50,000 queues.
        depth: dict[str, int | None] = {}  # None: a down queue, depth unknown
        dlqs = []
        for q in snapshot.queues:
            if q.is_dlq:
                dlqs.append(q.name)
                depth[q.name] = q.depth
            elif q.name == self.dlq:
                depth[q.name] = q.depth
        self.dlqs = sorted(dlqs)
        busiest = max(self.dlqs, key=lambda n: depth.get(n) or 0) if self.dlqs else None
        if busiest is not None and not self.user_picked and (
            self.dlq is None or self.dlq not in depth
            or (depth.get(self.dlq) == 0 and (depth.get(busiest) or 0) > 0)
        ):
            self.choose(busiest, by_user=False)
        if self.dlq is None:
            return
        if self.dlq not in depth:
            # Deleted (not listed at all; a queue that is down is listed, depth None): its
            # dead letters went with it, so none is offered for replay or delete.
            if not self.gone:
                self.gone = True
                self.read_at = self.read_depth = self.read_count = self.depth = None
                self.marked.clear()
                self.show_letters([])
            self._title()
            return
        if self.gone:  # declared again: read it afresh
            self.gone = False
            self.read_at = self.read_depth = self.read_count = None
        self.depth = depth.get(self.dlq)
        self._title()
        if self.active and self._moved() and (
                self.read_at is None or self.clock() - self.read_at >= AUTO_RELOAD_EVERY):
            self.reload()

    def _moved(self) -> bool:
        """The polled depth changed since the read (not: it caught up with what was read)."""
        return self.depth is not None and (self.read_at is None or (
            self.depth != self.read_depth and self.depth != self.read_count))

    def _shown_depth(self) -> int | None:
        """The depth to show: a whole read (every dead letter, no filter) counts them at the
        read, fresher than a poll's depth (the management API's statistics lag by up to
        its interval) until a poll says something else."""
        if self.read_count is not None and self.depth == self.read_depth:
            return self.read_count
        return self.depth

    def opened(self) -> None:
        """The view was shown: read the DLQ if it changed since the last read."""
        self.active = True
        if self._moved():
            self.reload()

    def closed(self) -> None:
        self.active = False

    def tick(self, stale_age: float | None) -> None:
        """Each second: the read's age and the dead letters' ages move on even when no poll
        succeeds; ``stale_age``: polls fail (or one hangs) and the depth is that old."""
        self.stale_age = stale_age
        if self.dlq is None:
            return
        self._title()
        if self.active and self.letters:
            self._render_rows()

    def _title(self) -> None:
        if self.gone:
            self.query_one("#dlq-title", Static).update(Text.assemble(
                (" DLQ ", "bold reverse"), f" {self.dlq}  ",
                ("no longer exists (not in the latest poll) · p picks another", "bold red")))
            return
        depth = self._shown_depth()
        shown = "?" if depth is None else str(depth)
        t = Text.assemble((" DLQ ", "bold reverse"), f" {self.dlq}  ({shown} messages")
        if self.stale_age is not None:
            t.append(f", stale {fmt_duration(self.stale_age)}", style="yellow")
        t.append(")  ")
        if self.read_at is not None:
            t.append(f"read {fmt_duration(self.clock() - self.read_at)} ago", style="dim")
            if self._moved():
                t.append(" · changed since: l reloads", style="yellow")
        self.query_one("#dlq-title", Static).update(t)

    def reset(self) -> None:
        """Forget the DLQ shown (another vhost was picked)."""
        self.dlq = None
        self.user_picked = False
        self.gone = False
        self.read_at = self.read_depth = self.read_count = None
        self.marked.clear()
        self.show_letters([])
        self.query_one("#dlq-title", Static).update(" no DLQ selected: press p to pick one")

    def choose(self, dlq: str, by_user: bool = True) -> None:
        self.user_picked = self.user_picked or by_user
        if dlq != self.dlq:
            self.read_at = self.read_depth = self.read_count = None
            self.letters = {}
            self.gone = False
        self.dlq = dlq
        self.marked.clear()
        self._title()
        if by_user or self.active:
            self.reload()

    # -- loading -------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the DLQ again. Reads never run side by side (two peeks would hide messages
        from each other) nor during a replay/delete: a request meanwhile is queued."""
        if self.dlq is None:
            return
        if self._loading or self._busy:
            self._reload_pending = True
            return
        self._loading = True
        self._load()

    @work(group="dlq-load", exit_on_error=False)
    async def _load(self) -> None:
        try:
            while True:
                self._reload_pending = False
                dlq, flt, depth = self.dlq, self.filter, self.depth
                if dlq is None:
                    return
                letters = await self.source.peek_dlq(dlq, flt, PEEK_LIMIT)
                if not self._reload_pending and dlq == self.dlq and not self.gone:
                    self.read_at, self.read_depth = self.clock(), depth
                    whole = flt.is_empty and len(letters) < PEEK_LIMIT
                    self.read_count = len(letters) if whole else None
                    self.show_letters(letters)
                    self._title()
                    return
        finally:
            self._loading = False

    def show_letters(self, letters: Sequence[DeadLetter]) -> None:
        self.letters = {dead_letter_key(dl): dl for dl in letters}
        self.marked &= set(self.letters)
        self._render_rows()
        self.query_one(CauseTable).show(self.letters.values(), self.clock())
        table = self.query_one("#dlq-table", KeyedTable)
        if table.row_count:
            self._show_detail(table.selected_key)
        else:
            self.query_one("#dlq-detail", Static).update(Text("no dead letters", style="dim"))
        self._help()

    def _render_rows(self) -> None:
        now = self.clock()
        self.query_one("#dlq-table", KeyedTable).set_rows({
            key: letter_row(dl, key in self.marked, now) for key, dl in self.letters.items()})

    @on(DataTable.RowHighlighted, "#dlq-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(None if event.row_key.value is None else str(event.row_key.value))

    def _show_detail(self, key: str | None) -> None:
        dl = self.letters.get(key or "")
        self.query_one("#dlq-detail", Static).update(detail_text(dl, self.clock()) if dl else "")

    def action_job_history(self) -> None:
        """The highlighted dead letter's job timeline (from the job events)."""
        key = self.query_one("#dlq-table", KeyedTable).selected_key
        dl = self.letters.get(key or "")
        if dl is not None and dl.job_id:
            self.post_message(DrillDown("job", dl.job_id))

    # -- filter and marks ----------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#dlq-filter", Input)
        box.display = True
        box.focus()

    @on(DataTable.RowSelected, "#dlq-table")
    def _into_detail(self, event: DataTable.RowSelected) -> None:
        """Enter on a dead letter: into its detail pane (scroll it; Esc comes back)."""
        event.stop()
        self.query_one("#dlq-detail-pane").focus()

    def action_leave_filter(self) -> None:
        """Esc in the filter: clear it (and read again if a filter was applied), back to the
        list; Esc in the detail pane: back to the list."""
        if self.query_one("#dlq-detail-pane").has_focus:
            self.query_one("#dlq-table").focus()
            return
        box = self.query_one("#dlq-filter", Input)
        box.value = ""
        box.display = False
        self.query_one("#dlq-table", KeyedTable).focus()
        if not self.filter.is_empty:
            self.filter = DeadLetterFilter()
            self.reload()

    @on(Input.Submitted, "#dlq-filter")
    def _filter(self, event: Input.Submitted) -> None:
        event.stop()
        self.filter = parse_filter(event.value)
        self.query_one("#dlq-table", KeyedTable).focus()
        self.reload()

    def action_mark(self) -> None:
        key = self.query_one("#dlq-table", KeyedTable).selected_key
        if key is None:
            return
        self.marked ^= {key}
        self._render_rows()
        self.query_one("#dlq-table", KeyedTable).action_cursor_down()
        self._help()

    def action_mark_all(self) -> None:
        self.marked = set() if self.marked == set(self.letters) else set(self.letters)
        self._render_rows()
        self._help()

    def action_reload(self) -> None:
        self.reload()

    @work(group="dlq-pick", exclusive=True, exit_on_error=False)
    async def action_pick_dlq(self) -> None:
        """``p``: every DLQ of the vhost, found from the dead-letter arguments and policies of
        the queues feeding it (not only names ending in .dlq), with why it is one."""
        found = await self.source.find_dlqs()
        labels = {f.name: f"{f.name}  ({'?' if f.messages is None else f.messages} msgs"
                          f"{'' if not f.consumers else f', {f.consumers} consumers!'}; "
                          f"{', '.join(f.how)})" for f in found}
        choice = await self.app.push_screen_wait(PickScreen(
            "Pick a DLQ (type to filter)", list(labels) or ["(none)"], self.dlq,
            labels=labels))
        if choice and choice in labels:
            self.choose(choice)

    # -- destructive actions -------------------------------------------------------------
    def _selection(self) -> DeadLetterFilter | None:
        if self.by_cause:
            cause = self.query_one(CauseTable).selected
            return DeadLetterFilter.for_jobs(cause.job_ids) if cause and cause.job_ids else None
        keys = self.marked or {self.query_one("#dlq-table", KeyedTable).selected_key or ""}
        ids = {self.letters[k].job_id or self.letters[k].message_id for k in keys if k in self.letters}
        ids.discard(None)
        return DeadLetterFilter.for_jobs(i for i in ids if i) if ids else None

    def _refuse_if_read_only(self, action: str) -> bool:
        if self.read_only:
            self.app.notify(str(ReadOnlyError(action)), severity="warning")
        return self.read_only

    def _which(self) -> str:
        if self.by_cause:
            return "of the highlighted cause"
        return "marked" if self.marked else "highlighted"

    def action_replay_selected(self) -> None:
        if not self._refuse_if_read_only("dlq replay"):
            flt = self._selection()
            if flt is not None and self.dlq:
                self.start_action("replay", self.dlq, flt, self._which())

    def action_replay_filtered(self) -> None:
        if not self._refuse_if_read_only("dlq replay") and self.dlq:
            self.start_action("replay", self.dlq, self.filter, "matching the filter")

    def action_delete_selected(self) -> None:
        if not self._refuse_if_read_only("dlq delete"):
            flt = self._selection()
            if flt is not None and self.dlq:
                self.start_action("delete", self.dlq, flt, self._which())

    def show_failure(self, text: str) -> None:
        self.query_one(ProgressBar).remove_class("visible")
        self._help(f"last action failed: {text}")
