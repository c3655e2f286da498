"""What a peek of any queue read: its first messages, read and put back by the DLQ core.

The table says which messages were already redelivered when read: a peek itself marks every
message it reads redelivered (the broker sets the flag on a message put back), so the next
peek, and the queue's consumers, see them as redelivered. Esc goes back."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from queuewatch.dlq import Page
from queuewatch.dlq.model import DeadLetter
from queuewatch.tui.layout import Column
from queuewatch.tui.widgets.dead_letter import detail_text
from queuewatch.tui.widgets.footer import PinnedFooter
from queuewatch.tui.widgets.keyed_table import KeyedTable

PEEK_COLUMNS = (
    Column("pos", "#", 4, right=True),
    Column("job", "Job id", 24, flex=True, min_width=12, max_width=40),
    Column("redelivered", "Redelivered", 11),
    Column("size", "Size", 7, 1, right=True),
    Column("body", "Body", 30, 2, flex=True, min_width=10),
)


def peek_row(dl: DeadLetter) -> tuple[Text | str, ...]:
    body = " ".join(dl.body_pretty.split())
    return (str(dl.position), dl.job_id or dl.message_id or "-",
            Text("yes", style="yellow") if dl.redelivered else "no", str(dl.size), body[:200])


def peek_title(page: Page, forced: bool) -> Text:
    """Two lines: what was read, then what reading did."""
    shown = len(page.items)
    head = (f" Peek {page.queue}: the first {shown} of {page.total} messages" if shown < page.total
            else f" Peek {page.queue}: {shown} message{'s' if shown != 1 else ''}")
    t = Text(head + (" (read while it has consumers)" if forced else ""), style="bold")
    t.append("\n read and put back: nothing removed; each message read is now marked "
             "redelivered", style="not bold")
    return t


#: Below this width the detail goes under the list instead of beside it.
NARROW = 110


class PeekScreen(Screen[None]):
    BINDINGS = [Binding("escape,backspace", "app.pop_screen", "Back")]

    def __init__(self, page: Page, clock: Callable[[], float], forced: bool = False) -> None:
        super().__init__()
        self.page = page
        self.clock = clock
        self.forced = forced
        self.letters = {str(dl.position): dl for dl in page.items}

    def compose(self) -> ComposeResult:
        yield Static(peek_title(self.page, self.forced), id="peek-title", markup=False)
        with Horizontal(id="peek-body"):
            yield KeyedTable(PEEK_COLUMNS, id="peek-table")
            with VerticalScroll(id="peek-detail-pane"):
                yield Static("", id="peek-detail", markup=False)
        yield PinnedFooter()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW, "narrow")

    def on_mount(self) -> None:
        table = self.query_one(KeyedTable)
        table.set_rows({key: peek_row(dl) for key, dl in self.letters.items()})
        table.focus()
        if not self.letters:
            self.query_one("#peek-detail", Static).update(Text("the queue is empty", style="dim"))
        else:
            self._detail(next(iter(self.letters)))

    @on(DataTable.RowHighlighted, "#peek-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(None if event.row_key.value is None else str(event.row_key.value))

    def _detail(self, key: str | None) -> None:
        dl = self.letters.get(key or "")
        self.query_one("#peek-detail", Static).update(detail_text(dl, self.clock()) if dl else "")
