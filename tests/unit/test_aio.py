"""A stop is never lost: :func:`queuewatch.aio.wait_for` keeps a cancellation that arrives
as the awaited thing completes (Python 3.11's ``asyncio.wait_for`` returns the result then,
and a worker's refiller lived on after SIGTERM), and :func:`queuewatch.aio.end_task` ends a
task that swallowed its first cancellation, and gives up, bounded, on one that ignores all."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from queuewatch.aio import end_task, wait_for


async def cancelled_as_it_completes(wait) -> object:  # type: ignore[no-untyped-def]
    """Cancel a task waiting (through ``wait``) on a future in the same loop step as the
    future gets its result; what the task's await gave (or CancelledError)."""
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(wait(fut, 10))
    await asyncio.sleep(0)  # the task waits
    await asyncio.sleep(0)
    fut.set_result(1)
    task.cancel()
    return await task


async def test_a_cancel_that_arrives_as_the_awaited_completes_is_kept():
    with pytest.raises(asyncio.CancelledError):
        await cancelled_as_it_completes(wait_for)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="fixed in Python 3.12 (gh-86296)")
async def test_python_3_11s_wait_for_loses_that_cancel():
    # Why queuewatch has its own: the stdlib's returns the result and the stop is gone
    assert await cancelled_as_it_completes(asyncio.wait_for) == 1


async def test_wait_for_times_out_and_returns_results():
    assert await wait_for(asyncio.sleep(0, "done"), 1) == "done"
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.sleep(5), 0.05)
    assert await wait_for(asyncio.sleep(0, "no bound"), None) == "no bound"


async def test_end_task_ends_a_task_that_swallowed_its_first_cancel():
    swallowed = []

    async def stubborn_once() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.append(True)  # as a library under us can
        while True:
            await asyncio.sleep(0.05)

    task = asyncio.create_task(stubborn_once())
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await end_task(task) is True
    assert swallowed == [True] and task.cancelled()
    assert loop.time() - start < 3


async def test_end_task_gives_up_on_a_task_that_ignores_every_cancel(caplog):
    stop = asyncio.Event()

    async def deaf() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(deaf(), name="deaf task")
    await asyncio.sleep(0.01)  # inside its loop
    with caplog.at_level(logging.WARNING, logger="queuewatch.aio"):
        assert await end_task(task, timeout=0.3) is False
    assert "deaf task ignored its cancellation" in caplog.text
    stop.set()
    await task


async def test_end_task_retrieves_an_error_and_takes_none():
    async def failing() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    assert await end_task(task) is True
    assert await end_task(None) is True
