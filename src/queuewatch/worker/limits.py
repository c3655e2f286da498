"""Queue-wide rate limits: jobs per second for a queue over every worker process and host.

Built on RabbitMQ alone. A limited queue ``Q`` has a token queue
(``queuewatch.tokens.Q``) that one elected worker refills at the limit's rate
(:mod:`.refill`); before a job of ``Q`` starts, its worker takes a token with ``basic.get``
(one token carries one permit up to :data:`~.refill.TOKENS_PER_SECOND` jobs/s, more above,
so a high limit costs about one round trip per hundred jobs/s, not one per job). With a
per-key limit (``rate_limit_per_key`` with ``rate_limit_key = "payload:customer"`` or
``"header:x-customer"``) a job first takes a token of its key's queue
(``queuewatch.tokens.Q.key.<key>``); a worker announces the keys it needs so the refiller
fills them. A job without the key field is logged as an error and shares one key,
``(none)``: it still runs, under that key's limit (nothing is lost).

The limit is the topology's, unless an operator set one at run time (``queuewatch queues
limit``; the queue-state stream), which wins. The per-process token bucket of old is
``rate_limit_per_process``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from queuewatch.broker.errors import ANY_BROKER_ERROR, raise_if_cancelled
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.types import Channel, DeliveryMode, Message
from queuewatch.errors import QueuewatchError
from queuewatch.events.queuestate import LimitSpec, QueueStates
from queuewatch.topology import QueueSpec
from queuewatch.worker.job import Job
from queuewatch.worker.refill import (
    KEY_QUEUE_ARGS,
    KEYS_QUEUE_ARGS,
    Refiller,
    key_queue,
    keys_queue,
    token_queue,
)

log = logging.getLogger(__name__)

#: The key of jobs that lack the key field.
MISSING_KEY = "(none)"
#: A worker announces a key it waits for at most this often (seconds).
ANNOUNCE_EVERY = 1.0
#: Seconds between "missing key" error lines of one queue (the others are counted).
MISSING_QUIET = 10.0
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_ERRORS: tuple[type[BaseException], ...] = (QueuewatchError, *ANY_BROKER_ERROR)


@dataclass(frozen=True)
class Taken:
    """The tokens a job took for the limit in force."""

    key: str | None = None
    """The key whose token it took (as in its token queue's name); None: no key token."""
    rate: bool = False
    """Whether it took a queue-wide token."""


NO_TOKENS = Taken()


def key_of(job: Job, where: str) -> str | None:
    """The job's key for a per-key limit (None when the field is missing)."""
    kind, _, name = where.partition(":")
    if kind == "header":
        value = job.headers.get(name)
    else:
        value = job.payload.get(name) if isinstance(job.payload, dict) else None
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def safe_key(key: str) -> str:
    """A key as part of a queue name (long or unusual keys are hashed)."""
    if _SAFE_KEY.match(key):
        return key
    return "h-" + hashlib.sha256(key.encode()).hexdigest()[:32]


class QueueLimiter:
    """Takes a token (per key, then queue-wide) before each job of one queue."""

    def __init__(self, link: BrokerLink, spec: QueueSpec, states: QueueStates,
                 worker_id: str) -> None:
        self.link = link
        self.spec = spec
        self.queue = spec.name
        self.states = states
        self.worker_id = worker_id
        self.refiller = Refiller(link, spec.name, self.limit, worker_id)
        self._configured = None if spec.rate_limit is None and spec.rate_limit_per_key is None \
            else LimitSpec(spec.rate_limit, spec.rate_limit_per_key, spec.rate_limit_key)
        """The topology's limit."""
        self._channel: Channel | None = None
        self._declared: set[str] = set()
        self._permits: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._announced: dict[str, float] = {}
        self._missing: tuple[float, int] = (float("-inf"), 0)

    def limit(self) -> LimitSpec | None:
        """The limit in force (run-time, else the topology's); None without one."""
        override = self.states.get(self.queue).limit
        if override is not None:
            return override if override.active else None
        return self._configured

    def start(self) -> None:
        self.refiller.start()

    async def close(self) -> None:
        await self.refiller.close()

    async def acquire(self, job: Job, taken: Taken = NO_TOKENS) -> Taken:
        """Take the tokens the limit in force asks of ``job`` beyond those it already
        ``taken``; returns all it took.

        A wait may be long (a whole prefetch waits here, one behind another) and the limit
        may change meanwhile (``queuewatch queues limit``). So a job waits for a token only
        while the limit in force still asks for it (a limit turned off, or a key field
        changed, leaves no job waiting for tokens nobody refills any more), and after each
        token the limit is read again: whatever the new one asks that was not taken yet is
        taken too (a per-key limit added), so a change applies to the jobs already waiting,
        not only to those that come after them. A limit set after this returned is
        :meth:`owes`' part (the worker asks it once the job has its concurrency slot)."""
        limit = self.limit()
        if limit is None:
            return taken  # the hot path of an unlimited queue
        taken_key, taken_rate = taken.key, taken.rate
        missing_logged = False
        while limit is not None:
            key = self._key(job, limit)
            if key is not None and key != taken_key:
                assert limit.per_key is not None and limit.key is not None
                if key_of(job, limit.key) is None and not missing_logged:
                    self._missing_key(job, limit.key)
                    missing_logged = True
                if await self._take(key_queue(self.queue, key), limit.per_key, key,
                                    partial(self._wants_key, job, key)):
                    taken_key = key
            elif limit.rate is not None and not taken_rate:
                taken_rate = await self._take(token_queue(self.queue), limit.rate, None,
                                              lambda: self._wants_rate(self.limit()))
            else:
                break
            limit = self.limit()
        return Taken(taken_key, taken_rate)

    def owes(self, job: Job, taken: Taken) -> bool:
        """Whether the limit in force asks ``job`` for a token it has not ``taken``: a limit
        set (or a per-key one added) after it passed :meth:`acquire`."""
        limit = self.limit()
        if limit is None:
            return False
        key = self._key(job, limit)
        return (key is not None and key != taken.key) or (limit.rate is not None
                                                          and not taken.rate)

    def _key(self, job: Job, limit: LimitSpec | None) -> str | None:
        """The key (as in its token queue's name) whose token ``limit`` asks ``job`` to take
        (None: no per-key limit)."""
        if limit is None or limit.per_key is None or limit.key is None:
            return None
        key = key_of(job, limit.key)
        return safe_key(MISSING_KEY if key is None else key)

    def _wants_key(self, job: Job, key: str) -> bool:
        return self._key(job, self.limit()) == key

    @staticmethod
    def _wants_rate(limit: LimitSpec | None) -> bool:
        return limit is not None and limit.rate is not None

    def _missing_key(self, job: Job, where: str) -> None:
        now = time.monotonic()
        last, hidden = self._missing
        if now - last < MISSING_QUIET:
            self._missing = (last, hidden + 1)
            return
        self._missing = (now, 0)
        more = f" ({hidden} more such jobs since the last line)" if hidden else ""
        log.error("job %s of %r has no %s for its per-key rate limit: it runs under the "
                  "shared key %r%s", job.job_id, self.queue, where, MISSING_KEY, more)

    async def _take(self, name: str, rate: float, key: str | None,
                    wanted: Callable[[], bool]) -> bool:
        """Take a permit of token queue ``name``: True once taken, False as soon as the limit
        in force no longer asks for it (``wanted()``)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        poll = min(max(0.5 / rate, 0.01), 0.05)
        async with lock:  # first come, first served within this process
            while True:
                if self._permits.get(name, 0) > 0:
                    self._permits[name] -= 1
                    return True
                if not wanted():
                    return False
                got = await self._get(name, key)
                if got:
                    self._permits[name] = got - 1
                    return True
                raise_if_cancelled()
                await asyncio.sleep(poll)

    async def _get(self, name: str, key: str | None) -> int:
        """Take one token message; its permits (0 when none is waiting or the link is down)."""
        try:
            channel = await self._open()
            if name not in self._declared:
                await channel.declare_queue(name, durable=True,
                                            arguments=KEY_QUEUE_ARGS if key is not None else None)
                self._declared.add(name)
            if key is not None:
                await self._announce(channel, key)
            queue = await channel.get_queue(name, ensure=False)
            message = await queue.get(no_ack=True, fail=False, timeout=5)
        except _ERRORS as exc:
            raise_if_cancelled()
            log.debug("taking a token of %r: %s", name, exc)
            self._channel = None
            self._declared.clear()
            return 0
        if message is None:
            return 0
        try:
            return max(int(message.body), 1)
        except ValueError:
            return 1

    async def _announce(self, channel: Channel, key: str) -> None:
        now = time.monotonic()
        if now - self._announced.get(key, float("-inf")) < ANNOUNCE_EVERY:
            return
        self._announced[key] = now
        if keys_queue(self.queue) not in self._declared:
            await channel.declare_queue(keys_queue(self.queue), durable=True,
                                        arguments=KEYS_QUEUE_ARGS)
            self._declared.add(keys_queue(self.queue))
        await channel.default_exchange.publish(
            Message(key.encode(), delivery_mode=DeliveryMode.NOT_PERSISTENT), keys_queue(self.queue))

    async def _open(self) -> Channel:
        channel = self._channel
        if channel is None or channel.is_closed:
            self._declared.clear()
            channel = self._channel = await self.link.channel(timeout=5.0)
        return channel

