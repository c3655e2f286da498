"""The one refiller of a rate-limited queue's tokens, elected among its workers.

Every worker of a limited queue is a candidate. The leader lock is an *exclusive* queue
(``queuewatch.tokens.<Q>.leader``): the broker lets exactly one connection declare it and
deletes it when that connection ends (a worker stopped, killed, or cut off), so another
candidate, retrying every :data:`LEADER_RETRY` seconds, takes over within about that time
and no two refill at once. The leader adds ``rate`` permits per second to the token queue
(``queuewatch.tokens.<Q>``) every :data:`TICK`, never letting more than a burst of
:data:`BURST_SECONDS` of permits wait there (it reads the queue's depth each tick), and does
the same per key for a per-key limit, for the keys workers announced on
``queuewatch.tokens.<Q>.keys``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from queuewatch.aio import end_task, wait_for
from queuewatch.broker.errors import ANY_BROKER_ERROR, close_channel, raise_if_cancelled
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.types import Channel, DeliveryMode, IncomingMessage, Message
from queuewatch.errors import QueuewatchError
from queuewatch.events.queuestate import LimitSpec
from queuewatch.telemetry import TOKENS_QUEUE_PREFIX

log = logging.getLogger(__name__)

#: Seconds between refills.
TICK = 0.05
#: Most permits that may wait in a token queue, in seconds of the rate (at least one token).
BURST_SECONDS = 0.2
#: Token messages per second at most: above this rate each token carries several permits.
TOKENS_PER_SECOND = 100
#: Seconds between a candidate's attempts to become the leader.
LEADER_RETRY = 1.0
#: A key no worker announced for this long gets no more tokens (its queue then expires).
KEY_IDLE = 60.0
#: An idle per-key token queue deletes itself after this (milliseconds).
KEY_QUEUE_EXPIRES_MS = 300_000

_ERRORS: tuple[type[BaseException], ...] = (QueuewatchError, *ANY_BROKER_ERROR)


def token_queue(queue: str) -> str:
    return f"{TOKENS_QUEUE_PREFIX}{queue}"


def key_queue(queue: str, key: str) -> str:
    return f"{TOKENS_QUEUE_PREFIX}{queue}.key.{key}"


def keys_queue(queue: str) -> str:
    return f"{TOKENS_QUEUE_PREFIX}{queue}.keys"


def leader_queue(queue: str) -> str:
    return f"{TOKENS_QUEUE_PREFIX}{queue}.leader"


KEY_QUEUE_ARGS: dict[str, Any] = {"x-expires": KEY_QUEUE_EXPIRES_MS}
KEYS_QUEUE_ARGS: dict[str, Any] = {"x-max-length": 10_000, "x-message-ttl": int(KEY_IDLE * 1000)}


def permits_per_token(rate: float) -> int:
    return max(1, int(rate // TOKENS_PER_SECOND))


class Refiller:
    """One candidate for refilling ``queue``'s tokens; see the module docstring."""

    def __init__(self, link: BrokerLink, queue: str, limit: Callable[[], LimitSpec | None],
                 worker_id: str) -> None:
        self.link = link
        self.queue = queue
        self.limit = limit
        self.worker_id = worker_id
        self.leader = False
        self.keys: dict[str, float] = {}
        """Key -> when a worker last announced it (monotonic)."""
        self._credit: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"refill {self.queue}")

    async def close(self) -> None:
        task, self._task = self._task, None
        await end_task(task)

    async def _run(self) -> None:
        while True:
            if self.limit() is None:
                await asyncio.sleep(LEADER_RETRY)
                continue
            if not self.link.alive:
                with contextlib.suppress(TimeoutError):
                    await wait_for(self.link.up.wait(), LEADER_RETRY)
                continue
            channel: Channel | None = None
            try:
                channel = await self.link.channel(timeout=LEADER_RETRY * 5)
                await channel.declare_queue(leader_queue(self.queue), exclusive=True,
                                            auto_delete=True)
                self.leader = True
                log.info("worker %s refills the rate-limit tokens of %r", self.worker_id,
                         self.queue)
                await self._refill(channel)
            except _ERRORS as exc:
                raise_if_cancelled()
                if self.leader:
                    log.info("worker %s stopped refilling %r: %s", self.worker_id, self.queue, exc)
            finally:
                self.leader = False
                await close_channel(channel)
            await asyncio.sleep(LEADER_RETRY)

    async def _refill(self, channel: Channel) -> None:
        await channel.declare_queue(token_queue(self.queue), durable=True)
        keys = await channel.declare_queue(keys_queue(self.queue), durable=True,
                                           arguments=KEYS_QUEUE_ARGS)
        await keys.consume(self._on_key, no_ack=True)
        self._credit.clear()
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK)
            raise_if_cancelled()  # (a publish or declare below may have swallowed a stop)
            now = time.monotonic()
            elapsed, last = now - last, now
            limit = self.limit()
            if limit is None:
                return  # no limit any more: give the lock up
            if limit.rate is not None:
                await self._fill(channel, token_queue(self.queue), limit.rate, elapsed, None)
            if limit.per_key is not None:
                for key, seen in list(self.keys.items()):
                    if now - seen > KEY_IDLE:
                        del self.keys[key]
                        self._credit.pop(key_queue(self.queue, key), None)
                        continue
                    await self._fill(channel, key_queue(self.queue, key), limit.per_key, elapsed,
                                     KEY_QUEUE_ARGS)

    async def _on_key(self, message: IncomingMessage) -> None:
        key = message.body.decode(errors="replace")
        if key:
            self.keys[key] = time.monotonic()

    async def _fill(self, channel: Channel, name: str, rate: float, elapsed: float,
                    arguments: dict[str, Any] | None) -> None:
        per = permits_per_token(rate)
        burst = max(float(per), rate * BURST_SECONDS)
        # Up to one token more than may wait: a token taken a little late (workers poll) does
        # not cost the permits that accrued meanwhile.
        credit = min(self._credit.get(name, 0.0) + elapsed * rate, burst + per)
        n = int(credit // per)
        if n > 0:
            # A declare answers with the depth (and makes a per-key queue that expired again).
            declared = await channel.declare_queue(name, durable=True, arguments=arguments)
            waiting = declared.declaration_result.message_count or 0
            n = min(n, max(0, math.ceil(burst / per) - waiting))
            body = str(per).encode()
            for _ in range(n):
                await channel.default_exchange.publish(
                    Message(body, delivery_mode=DeliveryMode.NOT_PERSISTENT), name)
            credit -= n * per
        self._credit[name] = credit
