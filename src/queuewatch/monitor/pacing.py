"""How long to wait before the next poll: the poll interval, stretched after a slow poll.

``poll_interval`` is the pause between the end of one poll and the start of the next (polls
never overlap). A poll that took longer than that pause (20,000 queues on a loaded broker
take seconds to list) would keep the management API busy most of the time, so the pause
after it stretches to :data:`STRETCH_FACTOR` × that poll's duration, at most
:data:`MAX_STRETCHED` seconds, and shrinks back as soon as a poll is quick again (polls
under :data:`STRETCH_AFTER`, 5 seconds, never stretch it). The CLI's
``--watch``, the console and the exporter all pace their polls with :func:`pace`, and all
say when the interval stretched (:meth:`Pace.text`, ``queuewatch_poll_interval_seconds``).
"""

from __future__ import annotations

from dataclasses import dataclass

from queuewatch.config import BROKER_STATS_INTERVAL

#: After a poll longer than the interval, the pause is this many times the poll's duration
#: (so the polls keep the management API busy at most 1 / (1 + 1.5) = 40 % of the time).
STRETCH_FACTOR = 1.5
#: The longest stretched pause (seconds); a configured interval longer than this is kept.
MAX_STRETCHED = 60.0
#: Polls shorter than this (seconds: the broker's statistics interval) never stretch the
#: interval: the stretch is for polls that are long in absolute terms (thousands of queues),
#: and a short interval (tests, demos) keeps its pace when a loaded machine makes a small
#: poll take a second or two. With the default 5 s interval the rule is simply "a poll
#: longer than the interval".
STRETCH_AFTER = BROKER_STATS_INTERVAL


@dataclass(frozen=True)
class Pace:
    """The pause before the next poll, and why."""

    interval: float
    """The configured pause (``poll_interval``)."""
    pause: float
    """The pause actually used before the next poll (>= ``interval``)."""
    poll_seconds: float | None = None
    """How long the last poll took (None: no poll yet)."""
    queues: int | None = None
    """Queues in the last snapshot."""

    @property
    def stretched(self) -> bool:
        """True while the pause is longer than the configured interval."""
        return self.pause > self.interval

    def text(self) -> str | None:
        """``polling every 13s (8.4s per poll at 20,000 queues)`` while stretched, else None."""
        if not self.stretched or self.poll_seconds is None:
            return None
        at = "" if self.queues is None else f" at {self.queues:,} queues"
        return (f"polling every {_secs(self.pause)} ({self.poll_seconds:.1f}s per poll{at}; "
                f"interval {_secs(self.interval)})")


def pace(interval: float, poll_seconds: float | None, queues: int | None = None) -> Pace:
    """The pause after a poll that took ``poll_seconds`` (None: none measured yet)."""
    pause = interval
    if poll_seconds is not None and poll_seconds > max(interval, STRETCH_AFTER):
        pause = max(interval, min(poll_seconds * STRETCH_FACTOR, MAX_STRETCHED))
    return Pace(interval=interval, pause=pause, poll_seconds=poll_seconds, queues=queues)


def _secs(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s".replace(".0s", "s")
