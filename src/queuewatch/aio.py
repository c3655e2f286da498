"""Two asyncio primitives that keep a stop a stop.

Python 3.11's ``asyncio.wait_for`` returns the awaited result when a cancellation arrives
just as the awaited thing completes, and the cancellation is lost (CPython gh-86296, fixed in
3.12 by building ``wait_for`` on ``asyncio.timeout``). A loop that lost one never ends: a
worker's rate-limit refiller, cancelled at shutdown while ``BrokerLink.channel()`` opened a
channel, went on refilling, and the worker ignored SIGTERM until its supervisor killed it
(CI failed so; here 1 in 70 starts of 2 worker processes in a new vhost and 5 in 67 of 4,
SIGTERM 0.3–2.5 s in; 0 in 40 of 4 with only this ``wait_for``). So
queuewatch waits with :func:`wait_for` (3.12's) and ends background tasks with
:func:`end_task`, which also outlasts a library that swallows a cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Seconds :func:`end_task` waits for a cancelled task; after the first second it cancels
#: it again every half second.
END_TASK_TIMEOUT = 5.0


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """``aw``'s result, or :class:`TimeoutError` after ``timeout`` seconds (None: no bound).
    Like ``asyncio.wait_for``, but a cancellation of the caller is never lost (module doc)."""
    async with asyncio.timeout(timeout):
        return await aw


async def end_task(task: asyncio.Future[Any] | None, timeout: float = END_TASK_TIMEOUT) -> bool:
    """Cancel ``task`` and wait (bounded) until it ends; True when it did. A task whose
    cancellation was swallowed (module doc; aio-pika/aiormq can too) is cancelled again,
    and one that still does not end is left behind with a warning. Never raises, but for a
    cancellation of the caller."""
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    wait = 1.0
    while not task.done():
        task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            name = task.get_name() if isinstance(task, asyncio.Task) else "a task"
            log.warning("%s ignored its cancellation for %gs; left behind", name, timeout)
            return False
        await asyncio.wait({task}, timeout=min(wait, left))
        wait = 0.5
    if not task.cancelled():
        task.exception()  # retrieved: never logged as "never retrieved"
    return True
