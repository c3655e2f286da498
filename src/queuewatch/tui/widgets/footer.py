"""The footer every screen of the console shows (dialogs too, so the keys listed are theirs)."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer

#: Keys pinned to the left of the footer: they must survive an 80-column terminal (help,
#: quit and the : command bar, which reaches every view).
PINNED_ACTIONS = ("app.help", "help", "app.quit", "quit", "app.command_bar", "command_bar")
#: Below this width the footer packs its keys tighter (one space between key and label).
COMPACT_BELOW = 120
#: Below this width the command palette's key (^p) is not shown: ":" reaches every view.
PALETTE_FROM = 100
PALETTE_ACTION = "command_palette"


class PinnedFooter(Footer):
    """The footer, with Help and Quit first (Textual lists the focused widget's keys first,
    and the app's fall off the right edge of a narrow terminal), compact in a narrow
    terminal so that a view's action keys fit in 80 columns.

    (The width is applied to the keys in place, not by recomposing: a recompose on resize
    lost the pinned order.)"""

    def compose(self) -> ComposeResult:
        keys = list(super().compose())
        pinned = [k for k in keys if getattr(k, "action", None) in PINNED_ACTIONS]
        self._fit(self.app.size.width, keys)
        yield from pinned
        yield from (k for k in keys if k not in pinned)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, list(self.children))

    def _fit(self, width: int, keys: list[Widget]) -> None:
        self.compact = width < COMPACT_BELOW
        for key in keys:
            if getattr(key, "action", None) == PALETTE_ACTION:
                key.display = width >= PALETTE_FROM
