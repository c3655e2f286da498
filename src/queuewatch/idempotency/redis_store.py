"""Completed keys in Redis, shared by workers on many hosts."""

from __future__ import annotations

import asyncio
from typing import Any

from queuewatch.errors import ConfigError
from queuewatch.idempotency.common import DEFAULT_TTL, on_record


class RedisStore:
    """Completed keys in Redis (``SET key 1 EX ttl``), shared by workers on many hosts.

    A key's outcome is its value until :meth:`confirmed` sets it back to ``1`` (in a
    background task: the job's coroutine does not wait for the round trip)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "queuewatch:done:",
                 ttl: float = DEFAULT_TTL, client: Any = None) -> None:
        if client is None:
            try:
                import redis.asyncio as aioredis
            except ImportError as exc:
                raise ConfigError(
                    "the Redis idempotency store needs the redis package: "
                    "pip install 'queuewatch[redis]'"
                ) from exc
            client = aioredis.from_url(url)
        self._redis = client
        self.prefix = prefix
        self.ttl = int(ttl)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def is_completed(self, key: str) -> bool:
        return bool(await self._redis.exists(self.prefix + key))

    async def completed_outcome(self, key: str) -> tuple[bool, str | None]:
        value = await self._redis.get(self.prefix + key)
        if value is None:
            return False, None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return True, (None if text == "1" else text)

    async def mark_completed(self, key: str, outcome: str | None = None,
                             recorded: asyncio.Future[bool] | None = None) -> None:
        await self._redis.set(self.prefix + key, (outcome or "1").encode(), ex=self.ttl)
        if outcome is not None and recorded is not None:
            recorded.add_done_callback(
                lambda r: self.confirmed(key) if on_record(r) else None)

    def confirmed(self, key: str) -> None:
        # XX: only if still there; KEEPTTL: the key keeps its expiry.
        task = asyncio.get_running_loop().create_task(
            self._redis.set(self.prefix + key, b"1", xx=True, keepttl=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()
