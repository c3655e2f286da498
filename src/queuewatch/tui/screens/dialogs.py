"""Small modal dialogs: confirmation, help, vhost picker."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static

from queuewatch.tui.widgets.footer import PinnedFooter


class ConfirmScreen(ModalScreen[bool]):
    """Ask before a destructive action; ``y``/Enter confirms, ``n``/Esc cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, detail: str, confirm_label: str = "Yes",
                 keep_label: str = "Cancel") -> None:
        super().__init__()
        self.title_text = title
        self.detail = detail
        self.confirm_label = confirm_label
        self.keep_label = keep_label

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title", markup=False)
            yield Static(self.detail, id="dialog-detail", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", variant="error", id="yes")
                yield Button(f"{self.keep_label} (n)", variant="primary", id="no")
        yield PinnedFooter()

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class HelpScreen(ModalScreen[None]):
    """Every key binding, grouped by where it works."""

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def __init__(self, sections: Iterable[tuple[str, Iterable[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        t = Text()
        t.append("queuewatch — keys\n", style="bold")
        for title, rows in self.sections:
            t.append(f"\n{title}\n", style="bold underline")
            for key, what in rows:
                t.append(f"  {key:<18}", style="bold cyan")
                t.append(f"{what}\n")
        t.append("\nCtrl+P opens the command palette. Esc closes this help.", style="dim")
        with VerticalScroll(id="help"):
            yield Static(t, markup=False)
        yield PinnedFooter()


class PickScreen(ModalScreen[str | None]):
    """Pick one of ``choices`` (vhosts, DLQs): type to filter, Enter picks, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("down", "to_list", show=False)]

    def __init__(self, title: str, choices: list[str], current: str | None = None,
                 labels: dict[str, str] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.current = current
        self.labels = labels or {}
        self.shown = list(choices)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title", markup=False)
            yield Input(placeholder="type to filter", id="pick-filter")
            yield OptionList(*(self.labels.get(c, c) for c in self.choices), id="pick",
                             markup=False)
        yield PinnedFooter()

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.current in self.choices:
            options.highlighted = self.choices.index(self.current)
        self.query_one("#pick-filter", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        text = event.value.strip().lower()
        self.shown = [c for c in self.choices if text in self.labels.get(c, c).lower()]
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([self.labels.get(c, c) for c in self.shown])
        if self.shown:
            options.highlighted = 0

    def on_input_submitted(self, event: Input.Submitted) -> None:
        options = self.query_one(OptionList)
        if self.shown and options.highlighted is not None:
            self.dismiss(self.shown[options.highlighted])

    def action_to_list(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.shown[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
