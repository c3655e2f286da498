"""The footer every screen of the console shows (dialogs too, so the keys listed are theirs)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer

#: Keys pinned to the left of the footer: they must survive an 80-column terminal (help,
#: quit and the : command bar, which reaches every view).
PINNED_ACTIONS = ("app.help", "help", "app.quit", "quit", "app.command_bar", "command_bar")


class PinnedFooter(Footer):
    """The footer, with Help and Quit first (Textual lists the focused widget's keys first,
    and the app's fall off the right edge of a narrow terminal)."""

    def compose(self) -> ComposeResult:
        keys = list(super().compose())
        pinned = [k for k in keys if getattr(k, "action", None) in PINNED_ACTIONS]
        yield from pinned
        yield from (k for k in keys if k not in pinned)
