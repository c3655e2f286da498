"""The ``:`` command bar: a one-line input at the bottom with completion (Tab or →) and the
matching commands listed over it. Enter returns the text; Esc closes it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Static

from queuewatch.tui.command_bar import Command, suggestions


class CommandBar(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "close", "Close"),
                Binding("tab", "complete", "Complete", priority=True)]

    def __init__(self, commands: Sequence[Command], completions: Sequence[str]) -> None:
        super().__init__()
        self.commands = list(commands)
        self.completions = list(completions)

    def compose(self) -> ComposeResult:
        with Vertical(id="command-bar"):
            yield Static("", id="command-hints", markup=False)
            yield Input(placeholder="command (Tab completes, Enter runs, Esc closes)",
                        suggester=SuggestFromList(self.completions, case_sensitive=False),
                        id="command-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._hint("")

    def on_input_changed(self, event: Input.Changed) -> None:
        self._hint(event.value)

    def _hint(self, text: str) -> None:
        matches = suggestions(text, self.commands)
        t = Text(" ")
        if not matches:
            t.append(f"no command starts with {text.split()[0]!r}" if text.strip() else "",
                     style="yellow")
        for c in matches:
            t.append(c.usage, style="bold cyan")
            t.append(f" {c.help}   ", style="dim")
        self.query_one("#command-hints", Static).update(t)

    def action_complete(self) -> None:
        box = self.query_one(Input)
        box.action_cursor_right()  # takes the suggestion shown (at the end of the text)
        box.cursor_position = len(box.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_close(self) -> None:
        self.dismiss(None)
