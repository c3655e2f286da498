"""The one reconnect policy: exponential backoff with full jitter and a cap.

Full jitter (a pause drawn uniformly from ``[0, min(cap, initial * factor**n)]``) spreads a
fleet of clients that lost the same broker at the same moment, so they do not all knock
again in step (AWS Architecture Blog, "Exponential Backoff and Jitter").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from queuewatch.aio import wait_for

#: First pause ceiling, growth factor and cap (seconds) unless settings say otherwise.
INITIAL_DELAY = 0.25
BACKOFF_FACTOR = 2.0
MAX_DELAY = 5.0


@dataclass(frozen=True)
class ReconnectPolicy:
    """How long to wait before attempt ``n`` (0-based) after a failure."""

    initial: float = INITIAL_DELAY
    factor: float = BACKOFF_FACTOR
    cap: float = MAX_DELAY

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.initial * self.factor ** min(attempt, 64))

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """A pause in ``[0, ceiling(attempt))`` (full jitter)."""
        return rng() * self.ceiling(attempt)

    def backoff(self, rng: Callable[[], float] | None = None) -> Backoff:
        return Backoff(self, rng or random.random)


@dataclass
class Backoff:
    """One client's run of failures: each :meth:`next_delay` grows the ceiling; a success
    :meth:`reset` s it."""

    policy: ReconnectPolicy
    rng: Callable[[], float] = random.random
    failures: int = field(default=0)

    def next_delay(self) -> float:
        pause = self.policy.delay(self.failures, self.rng)
        self.failures += 1
        return pause

    def reset(self) -> None:
        self.failures = 0

    async def sleep(self, stop: asyncio.Event | None = None) -> bool:
        """Pause for the next delay; returns True early when ``stop`` is set."""
        pause = self.next_delay()
        if stop is None:
            await asyncio.sleep(pause)
            return False
        try:
            await wait_for(stop.wait(), pause)
        except TimeoutError:
            return False
        return True


def policy_for(max_delay: float) -> ReconnectPolicy:
    return ReconnectPolicy(cap=max_delay)
