"""Unique jobs at enqueue (``unique_for=``): one lock queue per key, on the broker.

The lock is a queue that holds at most one message (``x-max-length: 1`` with
``x-overflow: reject-publish``): publishing a token with a confirm *is* the test-and-set —
confirmed means "acquired", nacked means "held" — atomic on the broker for producers on any
host, with no datastore beside RabbitMQ. The token's body is the job id, so a second
publisher can name the job that holds the key. The token expires after ``unique_for``
(``x-message-ttl``) even if nobody releases it; the worker releases it (purges the queue)
when the job finishes, succeeded or dead-lettered; an unused lock queue deletes itself
(``x-expires``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

from queuewatch.broker.errors import ANY_BROKER_ERROR, LINK_OR_AMQP_ERRORS, close_channel
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.publish import ConfirmedPublisher, Outcome, Properties
from queuewatch.broker.types import Channel
from queuewatch.errors import PublishError

PREFIX = "queuewatch.unique."
#: How long an idle lock queue outlives its token (seconds), then deletes itself.
EXPIRES_MARGIN = 60


@dataclass(frozen=True)
class UniqueLock:
    name: str
    key: str
    unique_for: float
    if_exists: Literal["raise", "return"]

    @property
    def arguments(self) -> dict[str, Any]:
        ttl_ms = max(math.ceil(self.unique_for * 1000), 1)
        return {"x-max-length": 1, "x-overflow": "reject-publish", "x-message-ttl": ttl_ms,
                "x-expires": ttl_ms + EXPIRES_MARGIN * 1000}


def lock_name(queue: str, key: str) -> str:
    return PREFIX + hashlib.sha256(f"{queue}\0{key}".encode()).hexdigest()[:32]


def unique_lock(queue: str, key: str | None, unique_for: float,
                if_exists: Literal["raise", "return"] = "raise") -> UniqueLock:
    """The lock for ``key`` on ``queue``; ValueError for values that cannot be one."""
    if not key:
        raise ValueError("unique_for needs a key: pass unique_key= or job_id=")
    if isinstance(unique_for, bool) or not isinstance(unique_for, int | float) \
            or not 0 < unique_for < float("inf"):
        raise ValueError(f"unique_for must be a finite number of seconds > 0 (got {unique_for!r})")
    if if_exists not in ("raise", "return"):
        raise ValueError(f"if_exists must be 'raise' or 'return' (got {if_exists!r})")
    return UniqueLock(lock_name(queue, key), key, float(unique_for), if_exists)


class Locks:
    """Takes and releases unique-job locks over a link (one admin channel, reused)."""

    def __init__(self, link: BrokerLink, publisher: ConfirmedPublisher) -> None:
        self.link = link
        self.publisher = publisher
        self._channel: Channel | None = None
        self._lock = asyncio.Lock()

    async def _admin(self) -> Channel:
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                self._channel = await self.link.channel(timeout=30.0)
            return self._channel

    async def acquire(self, lock: UniqueLock, job_id: str) -> str | None:
        """None when acquired; else the job id holding it ("" when it could not be read)."""
        try:
            channel = await self._admin()
            await channel.declare_queue(lock.name, durable=True, arguments=lock.arguments)
        except LINK_OR_AMQP_ERRORS as exc:
            self._channel = None
            raise PublishError(f"unique key {lock.key!r}: the lock queue could not be declared "
                               f"({exc})") from exc
        result = await self.publisher.publish(
            job_id.encode(), exchange="", routing_key=lock.name, queue=lock.name,
            properties=Properties(delivery_mode=2, message_id=job_id))
        if result.ok:
            return None
        if result.outcome is not Outcome.NACKED:
            raise PublishError(f"unique key {lock.key!r}: taking the lock failed: "
                               f"{result.outcome.value} ({result.detail})")
        try:
            queue = await channel.get_queue(lock.name, ensure=False)
            held = await queue.get(no_ack=False, fail=False, timeout=5)
        except LINK_OR_AMQP_ERRORS:
            return ""
        if held is None:
            return ""
        await held.reject(requeue=True)
        return held.body.decode("utf-8", "replace")

    async def release(self, name: str) -> None:
        try:
            channel = await self._admin()
            queue = await channel.get_queue(name, ensure=False)
            await queue.purge()
        except ANY_BROKER_ERROR:  # gone already, or the link: the token's TTL ends it anyway
            self._channel = None

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        await close_channel(channel)
