"""What both stores share."""

from __future__ import annotations

import asyncio

#: Forget completed keys after this long (seconds); redeliveries come much sooner.
DEFAULT_TTL = 7 * 24 * 3600.0


def on_record(recorded: asyncio.Future[bool]) -> bool:
    """Whether an ended record future says the outcome is on record."""
    return not recorded.cancelled() and recorded.exception() is None and bool(recorded.result())
