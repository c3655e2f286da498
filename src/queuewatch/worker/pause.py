"""Paused queues in the worker: stop taking jobs from a paused queue, take them again on resume.

The state comes from the queue-state stream (:mod:`queuewatch.events.queuestate`), read from
its start before the worker subscribes to its job queues (bounded wait), then live. Pausing
cancels the queue's consumer (``basic.cancel``: no new deliveries; jobs running finish and
are acked on the same channel); deliveries already prefetched but not started go back to
the queue (the processor checks :attr:`Processor.paused` before it starts a job). The
heartbeat reports the consumer as not live with cause ``paused``, which the monitor shows as
a paused queue, not as a worker in trouble. Resuming subscribes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from queuewatch.broker.consumer import OLD_CHANNEL_GRACE, Subscription
from queuewatch.broker.link import BrokerLink
from queuewatch.events.queuestate import QueueState, QueueStates

log = logging.getLogger(__name__)


def paused_reason(state: QueueState) -> str:
    by = f" by {state.changed_by}" if state.changed_by else ""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(state.changed_at)) if state.changed_at else ""
    return f"queue paused{by}{' at ' + when + ' UTC' if when else ''} ('queuewatch queues resume')"


class Pauses:
    """Applies pause and resume of the worker's queues to their subscriptions."""

    def __init__(self, link: BrokerLink, states: QueueStates, paused: set[str],
                 subscriptions: dict[str, Subscription], worker_id: str,
                 running: Callable[[str], bool] = lambda _queue: True) -> None:
        self.link = link
        self.running = running
        """Whether a job of the queue is running now."""
        self.states = states
        self.paused = paused
        """The processor's set: a prefetched job of a queue in it goes back unstarted."""
        self.subscriptions = subscriptions
        self.worker_id = worker_id
        self._tasks: set[asyncio.Task[Any]] = set()
        states.listeners.append(self._changed)

    async def apply(self) -> None:
        """After the subscriptions are made: those of paused queues stay cancelled."""
        for name, sub in self.subscriptions.items():
            state = self.states.get(name)
            if state.paused:
                self.paused.add(name)
                log.info("worker %s: %r is paused; not consuming it", self.worker_id, name)
                await sub.cancel("paused", paused_reason(state))

    def _changed(self, before: QueueState, after: QueueState) -> None:
        if before.paused == after.paused:
            return
        sub = self.subscriptions.get(after.queue)
        if sub is None:
            return  # not ours, or not subscribed yet (apply() handles it)
        if after.paused:
            self.paused.add(after.queue)
            log.info("worker %s: pausing %r", self.worker_id, after.queue)
            task = asyncio.ensure_future(self._pause(sub, after))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.paused.discard(after.queue)
            log.info("worker %s: resuming %r", self.worker_id, after.queue)
            sub.resume(self._keep_old_for(after.queue))

    async def _pause(self, sub: Subscription, state: QueueState) -> None:
        await sub.cancel("paused", paused_reason(state))
        if sub.queue not in self.paused:
            sub.resume(self._keep_old_for(sub.queue))  # resumed while the cancel was under way

    def _keep_old_for(self, queue: str) -> float:
        """How long the old channel stays open: until the jobs of ``queue`` running on it
        can have finished, or not at all when none runs (closing it requeues only
        prefetched deliveries that would go back anyway)."""
        return OLD_CHANNEL_GRACE if self.running(queue) else 0.0
