"""How the leader publishes one tick's job so that "published" and "recorded" cannot part.

The job is published **once**, on the leader's own connection (the one that owns the leader
queue), to its queue *and* — by the same publish, through a ``BCC`` routing key — to the
ledger stream. RabbitMQ routes one publish to every queue it matches in one step of the
channel, so a leader killed at any moment leaves either both copies or neither: a new
leader that read the ledger to its end (a marker round trip) knows every tick that reached
the queue, and fires exactly the ones that did not. No lock is taken first, so there is no
"lock taken, job never published" state to lose a tick in.

Two cases the single publish cannot decide by itself, handled around it:

- the queue is missing (the publish would reach the ledger only): the queue is checked with
  a passive declare just before, and the tick tried again later;
- the queue refuses the job (``x-overflow: reject-publish`` at its cap, a nack): the ledger
  copy arrived anyway, so a ``refused`` record follows it and the tick is due again.

A test seam, read only here: ``QUEUEWATCH_TEST_SCHEDULER_PAUSE=before:N`` (or ``after:N``)
makes the leader stop for an hour just before (after) publishing its N-th tick, after a
log line saying so, so that a test can kill -9 it exactly there.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from datetime import UTC, datetime
from typing import Any

from queuewatch.aio import wait_for
from queuewatch.broker.errors import LINK_OR_AMQP_ERRORS, close_channel
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.publish import ConfirmedPublisher, Outcome, Properties
from queuewatch.config import Settings
from queuewatch.events.model import Source
from queuewatch.events.recorder import EventRecorder, recorder_for
from queuewatch.producer._common import Outgoing, accepted_event, build
from queuewatch.schedules.book import H_SCHEDULE, H_TICK
from queuewatch.schedules.spec import Schedule, tick_id
from queuewatch.schedules.store import LEDGER_STREAM

log = logging.getLogger(__name__)

#: The routing header RabbitMQ reads as more routing keys and removes before delivery.
BCC = "BCC"
TEST_PAUSE_ENV = "QUEUEWATCH_TEST_SCHEDULER_PAUSE"
#: How long a publish waits for the link's confirm channel (seconds). A leader whose link
#: broke is no leader any more: the scheduler checks that before each publish.
LINK_WAIT = 2.0
_CHECK_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *LINK_OR_AMQP_ERRORS)


class TickOutcome(enum.Enum):
    FIRED = "fired"
    """In the queue and in the ledger."""
    NOT_SENT = "not_sent"
    """Nothing was published (queue missing or down, link lost before sending): try again."""
    REFUSED = "refused"
    """The queue refused it (full); the ledger copy is undone by a ``refused`` record."""


def _test_pause() -> tuple[str, int] | None:
    raw = os.environ.get(TEST_PAUSE_ENV, "")
    where, _, n = raw.partition(":")
    if where in ("before", "after") and n.isdigit():
        return where, int(n)
    return None


class TickPublisher:
    """Publishes ticks over ``link`` (the leader's own link)."""

    def __init__(self, link: BrokerLink, settings: Settings, name: str) -> None:
        self.link = link
        self._publisher = ConfirmedPublisher(link)
        self.recorder: EventRecorder | None = recorder_for(link, settings)
        self._source = Source("scheduler", name=name)
        self._count = 0
        self._pause = _test_pause()

    async def close(self) -> None:
        if self.recorder is not None:
            await self.recorder.close()
        await self._publisher.close()

    def outgoing(self, s: Schedule, tick: int) -> Outgoing:
        headers: dict[str, Any] = {H_SCHEDULE: s.name, H_TICK: tick, BCC: [LEDGER_STREAM]}
        return build(s.queue, s.payload, delay_levels=1, job_id=tick_id(s.name, tick),
                     priority=s.priority, headers=headers)

    async def publish(self, s: Schedule, tick: int) -> tuple[TickOutcome, str]:
        """Publish the tick's job; the outcome and, when not fired, why."""
        missing = await self._queue_missing(s.queue)
        if missing:
            return TickOutcome.NOT_SENT, missing
        out = self.outgoing(s, tick)
        self._count += 1
        await self._maybe_pause("before", out.message_id)
        props = Properties(content_type=out.content_type, delivery_mode=2, priority=out.priority,
                           message_id=out.message_id,
                           timestamp=datetime.fromtimestamp(out.timestamp, UTC),
                           headers=out.headers)
        result = await self._publisher.publish(
            out.body, exchange=out.exchange, routing_key=out.routing_key, properties=props,
            queue=out.queue, link_timeout=LINK_WAIT)
        await self._maybe_pause("after", out.message_id)
        if result.outcome is Outcome.CONFIRMED:
            if self.recorder is not None:
                await self.recorder.record(accepted_event(out, self._source))
            return TickOutcome.FIRED, ""
        if result.outcome is Outcome.NACKED:
            return TickOutcome.REFUSED, result.detail
        # Lost link, queue down, refused: maybe sent, maybe not — the ledger says which
        # (the next leader reads it to its end before firing anything).
        return TickOutcome.NOT_SENT, f"{result.outcome.value}: {result.detail}"

    async def _queue_missing(self, queue: str) -> str | None:
        """Why ``queue`` cannot take the job now (missing, its node down), else None."""
        try:
            channel = await self.link.channel(timeout=5.0)
        except LINK_OR_AMQP_ERRORS as exc:
            return f"no link: {exc}"
        try:
            await wait_for(channel.declare_queue(queue, passive=True), 5.0)
        except _CHECK_ERRORS as exc:
            return f"queue {queue!r} cannot be checked or does not exist: {exc}"
        finally:
            await close_channel(channel)
        return None

    async def _maybe_pause(self, where: str, job_id: str) -> None:
        if self._pause is not None and self._pause == (where, self._count):
            log.warning("test seam: paused %s publishing %s", where, job_id)
            await asyncio.sleep(3600)
