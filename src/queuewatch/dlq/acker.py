"""Acknowledging consumed deliveries exactly once, as few frames as possible.

A delivery is *resolved* either ``done`` (its republish was confirmed: ack it) or ``held``
(it stays unacked and goes back to its place when the channel closes). Acks use
``multiple=True`` up to the highest contiguous done tag while nothing is held; once a
delivery is held, ``multiple`` would ack it too, so later acks are single.
"""

from __future__ import annotations

from collections.abc import Callable


class Acker:
    def __init__(self, send: Callable[[int, bool], None]) -> None:
        """``send(delivery_tag, multiple)`` issues one ``basic.ack``."""
        self._send = send
        self._resolved: dict[int, bool] = {}
        self._cursor = 1
        """Every tag below the cursor is resolved (and acked if done)."""
        self._held_any = False
        self.acked = 0
        self.held = 0

    def done(self, tag: int) -> None:
        self._resolved[tag] = True
        self._advance()

    def hold(self, tag: int) -> None:
        self._resolved[tag] = False
        self.held += 1
        self._advance()

    def _advance(self) -> None:
        multiple_upto = 0
        while self._cursor in self._resolved:
            tag = self._cursor
            ok = self._resolved.pop(tag)
            self._cursor += 1
            if not ok:
                if multiple_upto:
                    self._send(multiple_upto, True)
                    multiple_upto = 0
                self._held_any = True
                continue
            self.acked += 1
            if self._held_any:
                self._send(tag, False)
            else:
                multiple_upto = tag
        if multiple_upto:
            self._send(multiple_upto, True)

    @property
    def pending(self) -> int:
        """Resolved tags still waiting for an earlier tag to resolve."""
        return len(self._resolved)
