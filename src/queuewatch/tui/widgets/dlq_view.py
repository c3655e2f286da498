"""The DLQ browser: pick a DLQ, list and filter its dead letters, inspect, mark, replay, delete.

Looking never loses anything: the list comes from the source's ``peek_dlq`` (the DLQ core
reads and requeues). Replay and delete run a dry run first and show its count in the
confirmation; long replays show a progress bar.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, ProgressBar, Static

from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import DeadLetter, published_ms
from queuewatch.errors import ReadOnlyError
from queuewatch.monitor.model import Snapshot, fmt_duration
from queuewatch.tui.screens.dialogs import ConfirmScreen, PickScreen
from queuewatch.tui.source import DataSource
from queuewatch.tui.widgets.dead_letter import detail_text
from queuewatch.tui.widgets.keyed_table import KeyedTable

#: How many dead letters the browser reads at once.
PEEK_LIMIT = 500
DLQ_COLUMNS = (
    ("mark", "✓", 1), ("job", "Job id", 20), ("queue", "Orig. queue", 14),
    ("reason", "Reason", 10), ("attempts", "Att", 3), ("age", "Age", 6), ("error", "Error", 0),
)
DESTRUCTIVE = {"replay_selected", "replay_filtered", "delete_selected"}


def parse_filter(text: str) -> DeadLetterFilter:
    """``type:ValueError reason:failed some text`` -> a :class:`DeadLetterFilter`."""
    error_type = reason = None
    words = []
    for word in text.split():
        if word.startswith(("type:", "error:")):
            error_type = word.split(":", 1)[1] or None
        elif word.startswith("reason:"):
            reason = word.split(":", 1)[1].replace("_", " ") or None
        else:
            words.append(word)
    return DeadLetterFilter(error_type=error_type, reason=reason, text=" ".join(words) or None)


def dead_letter_key(dl: DeadLetter) -> str:
    return dl.job_id or dl.message_id or f"#{dl.position}"


class DlqView(Vertical):
    BINDINGS = [
        Binding("p", "pick_dlq", "Pick DLQ"),
        Binding("space", "mark", "Mark"),
        Binding("a", "mark_all", "Mark all"),
        Binding("l", "reload", "Reload"),
        Binding("r", "replay_selected", "Replay marked"),
        Binding("R", "replay_filtered", "Replay filtered"),
        Binding("d", "delete_selected", "Delete marked"),
        Binding("e", "export", "Export"),
    ]

    def __init__(self, source: DataSource, read_only: bool, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.source = source
        self.read_only = read_only
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
        self.seen_depth: int | None = None

    def compose(self) -> ComposeResult:
        yield Static(" no DLQ selected: press p to pick one", id="dlq-title")
        yield Input(placeholder="filter: text, type:ValueError, reason:failed (Enter applies)",
                    id="dlq-filter")
        with Horizontal(id="dlq-body"):
            yield KeyedTable(DLQ_COLUMNS, id="dlq-table")
            with VerticalScroll(id="dlq-detail-pane"):
                yield Static("", id="dlq-detail")
        yield ProgressBar(id="dlq-progress", show_eta=False)
        yield Static("", id="dlq-help", classes="view-help")

    def on_mount(self) -> None:
        self._help()

    def _help(self, extra: str = "") -> None:
        actions = ("read-only: replay, delete are disabled" if self.read_only else
                   "space mark · r replay marked · R replay filtered · d delete marked")
        text = f" {len(self.letters)} shown · {len(self.marked)} marked · {actions} · e export · p pick"
        self.query_one("#dlq-help", Static).update(text + (f" · {extra}" if extra else ""))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in DESTRUCTIVE and self.read_only:
            return None
        return True

    # -- snapshot ------------------------------------------------------------------------
    def apply(self, snapshot: Snapshot) -> None:
        """Follow the snapshot: the DLQ list, the depth in the title, a reload when it moved."""
        self.dlqs = sorted(q.name for q in snapshot.queues if q.is_dlq)
        depth = {q.name: q.depth for q in snapshot.queues}  # None: a down queue, depth unknown
        busiest = max(self.dlqs, key=lambda n: depth.get(n) or 0) if self.dlqs else None
        if busiest is not None and not self.user_picked and (
            self.dlq is None or (depth.get(self.dlq) == 0 and (depth.get(busiest) or 0) > 0)
        ):
            self.choose(busiest, by_user=False)
        if self.dlq is None:
            return
        now = depth.get(self.dlq)
        self._title(now)
        if now is not None and now != self.seen_depth and getattr(self.app, "active_view", "") == "dlq":
            self.reload()
        self.seen_depth = now

    def _title(self, depth: int | None) -> None:
        shown = "?" if depth is None else str(depth)
        self.query_one("#dlq-title", Static).update(
            Text.assemble((" DLQ ", "bold reverse"), f" {self.dlq}  ({shown} messages)  ",
                          ("p: pick another", "dim"))
        )

    def reset(self) -> None:
        """Forget the DLQ shown (another vhost was picked)."""
        self.dlq = None
        self.user_picked = False
        self.marked.clear()
        self.show_letters([])
        self.query_one("#dlq-title", Static).update(" no DLQ selected: press p to pick one")

    def choose(self, dlq: str, by_user: bool = True) -> None:
        self.user_picked = self.user_picked or by_user
        self.dlq = dlq
        self.marked.clear()
        self._title(None)
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
                dlq, flt = self.dlq, self.filter
                if dlq is None:
                    return
                letters = await self.source.peek_dlq(dlq, flt, PEEK_LIMIT)
                if not self._reload_pending and dlq == self.dlq:
                    self.show_letters(letters)
                    return
        finally:
            self._loading = False

    def show_letters(self, letters: Sequence[DeadLetter]) -> None:
        self.letters = {dead_letter_key(dl): dl for dl in letters}
        self.marked &= set(self.letters)
        self._render_rows()
        table = self.query_one(KeyedTable)
        if table.row_count:
            self._show_detail(table.selected_key)
        else:
            self.query_one("#dlq-detail", Static).update(Text("no dead letters", style="dim"))
        self._help()

    def _render_rows(self) -> None:
        rows = {}
        for key, dl in self.letters.items():
            d = dl.death
            error = f"{d.error_type or ''}: {d.error_message or ''}".strip(": ")
            rows[key] = (
                Text("✓", style="bold green") if key in self.marked else " ",
                dl.job_id or "-", d.original_queue or (d.route.routing_key if d.route else "-"),
                d.reason or "-", "-" if d.attempts is None else str(d.attempts),
                fmt_duration(self._age(dl)), error.splitlines()[0] if error else "-",
            )
        self.query_one(KeyedTable).set_rows(rows)

    def _age(self, dl: DeadLetter) -> float | None:
        ms = dl.death.last_death_ms or published_ms(dl.headers, dl.properties)
        clock = getattr(self.app, "clock", None)
        if ms is None or clock is None:
            return dl.age_seconds
        return max(float(clock()) - ms / 1000.0, 0.0)

    @on(DataTable.RowHighlighted, "#dlq-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(None if event.row_key.value is None else str(event.row_key.value))

    def _show_detail(self, key: str | None) -> None:
        dl = self.letters.get(key or "")
        self.query_one("#dlq-detail", Static).update(detail_text(dl) if dl else "")

    # -- filter and marks ----------------------------------------------------------------
    def focus_filter(self) -> None:
        self.query_one("#dlq-filter", Input).focus()

    @on(Input.Submitted, "#dlq-filter")
    def _filter(self, event: Input.Submitted) -> None:
        self.filter = parse_filter(event.value)
        self.query_one(KeyedTable).focus()
        self.reload()

    def action_mark(self) -> None:
        key = self.query_one(KeyedTable).selected_key
        if key is None:
            return
        self.marked ^= {key}
        self._render_rows()
        self.query_one(KeyedTable).action_cursor_down()
        self._help()

    def action_mark_all(self) -> None:
        self.marked = set() if self.marked == set(self.letters) else set(self.letters)
        self._render_rows()
        self._help()

    def action_reload(self) -> None:
        self.reload()

    def action_pick_dlq(self) -> None:
        def picked(choice: str | None) -> None:
            if choice:
                self.choose(choice)
        self.app.push_screen(PickScreen("Pick a DLQ", self.dlqs or ["(none)"], self.dlq), picked)

    # -- destructive actions -------------------------------------------------------------
    def _selection(self) -> DeadLetterFilter | None:
        keys = self.marked or {self.query_one(KeyedTable).selected_key or ""}
        ids = {self.letters[k].job_id or self.letters[k].message_id for k in keys if k in self.letters}
        ids.discard(None)
        return DeadLetterFilter.for_jobs(i for i in ids if i) if ids else None

    def _refuse_if_read_only(self, action: str) -> bool:
        if self.read_only:
            self.app.notify(str(ReadOnlyError(action)), severity="warning")
        return self.read_only

    def action_replay_selected(self) -> None:
        if not self._refuse_if_read_only("dlq replay"):
            flt = self._selection()
            if flt is not None and self.dlq:
                self._run("replay", self.dlq, flt, "marked")

    def action_replay_filtered(self) -> None:
        if not self._refuse_if_read_only("dlq replay") and self.dlq:
            self._run("replay", self.dlq, self.filter, "matching the filter")

    def action_delete_selected(self) -> None:
        if not self._refuse_if_read_only("dlq delete"):
            flt = self._selection()
            if flt is not None and self.dlq:
                self._run("delete", self.dlq, flt, "marked")

    @work(group="dlq-action", exclusive=True, exit_on_error=False)
    async def _run(self, verb: str, dlq: str, flt: DeadLetterFilter, which: str) -> None:
        while self._loading:  # let a running read finish: it holds messages for a moment
            await asyncio.sleep(0.05)
        self._busy = True
        try:
            await self._act(verb, dlq, flt, which)
        finally:
            self._busy = False
            self._reload_pending = False
            self.reload()

    async def _act(self, verb: str, dlq: str, flt: DeadLetterFilter, which: str) -> None:
        count = await (self.source.replay_dlq(dlq, flt, dry_run=True) if verb == "replay"
                       else self.source.delete_dlq(dlq, flt, dry_run=True))
        if count == 0:
            self.app.notify(f"nothing to {verb}: no dead letter {which}", severity="warning")
            return
        where = "back to their original queues" if verb == "replay" else "for good (audit-logged)"
        ok = await self.app.push_screen_wait(ConfirmScreen(
            f"{verb.capitalize()} {count} dead letters?",
            f"{count} dead letters {which} in {dlq} will be {verb}ed {where}.\n"
            f"Dry run counted {count}; filter: {flt.describe() or 'none'}.",
            confirm_label=verb.capitalize(),
        ))
        if not ok:
            return
        bar = self.query_one(ProgressBar)
        bar.add_class("visible")
        bar.update(total=count, progress=0)

        def progress(done: int) -> None:
            self.app.call_later(bar.update, progress=done)

        try:
            if verb == "replay":
                done = await self.source.replay_dlq(dlq, flt, dry_run=False, progress=progress)
            else:
                done = await self.source.delete_dlq(dlq, flt, dry_run=False)
        finally:
            bar.remove_class("visible")
        self.marked.clear()
        self.app.notify(f"{verb}ed {done} of {count} dead letters from {dlq}")

    @work(group="dlq-action", exclusive=True, exit_on_error=False)
    async def action_export(self) -> None:
        if not self.dlq:
            return
        while self._loading:
            await asyncio.sleep(0.05)
        self._busy = True
        path = Path.cwd() / f"{self.dlq}-export.jsonl"
        try:
            n = await self.source.export_dlq(self.dlq, DeadLetterFilter(), path)
        finally:
            self._busy = False
        self.app.notify(f"exported all {n} dead letters of {self.dlq} to {path} (nothing removed)")

    def action_failed(self, text: str) -> None:
        self.query_one(ProgressBar).remove_class("visible")
        self._help(f"last action failed: {text}")
