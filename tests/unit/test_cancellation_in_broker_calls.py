"""A stop that lands inside a broker call ends the loop that made it. aio-pika/aiormq may turn
the cancellation into a channel error; a loop that catches broker errors and goes on would
then never end, and the worker would outlive SIGTERM (seen in fresh-clone runs: a rate-limit
wait, then the heartbeat sender: "worker process did not stop in 40s: killed")."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from queuewatch.broker.errors import raise_if_cancelled
from queuewatch.worker.process import Counts
from queuewatch.worker.telemetry import HeartbeatSender


class CancelBecomesChannelError:
    """A channel whose calls turn a cancellation into a channel error, as aiormq can."""

    async def get_exchange(self, name: str, ensure: bool = False) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RuntimeError("channel closed: the call was cancelled") from None


async def test_the_heartbeat_sender_stops_when_cancelled_inside_a_publish():
    processor = SimpleNamespace(counts=Counts(), running={})
    sender = HeartbeatSender(processor, "w-1", ["q"], 1, "x", "conn", interval=60)  # type: ignore[arg-type]
    channel = CancelBecomesChannelError()

    async def channel_of() -> Any:
        return channel

    task = asyncio.create_task(sender.run(channel_of))
    await asyncio.sleep(0.05)  # inside get_exchange
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)  # not asleep for its 60 s interval


async def test_raise_if_cancelled_only_raises_in_a_task_asked_to_stop():
    raise_if_cancelled()  # not cancelled: nothing

    async def swallowing() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # what a library may do
        raise_if_cancelled()

    task = asyncio.create_task(swallowing())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_the_library_raises_into_a_call_is_a_lost_link():
    from queuewatch.broker.errors import LinkLost, lost_unless_cancelled

    async def call() -> None:
        try:
            raise asyncio.CancelledError  # as aiormq does when it drops the connection under a call
        except asyncio.CancelledError as exc:
            raise lost_unless_cancelled(exc, "publishing") from exc

    with pytest.raises(LinkLost, match="publishing: the connection was dropped"):
        await call()


async def test_a_cancellation_of_the_caller_stays_a_cancellation():
    from queuewatch.broker.errors import lost_unless_cancelled

    inside = asyncio.Event()

    async def call() -> None:
        try:
            inside.set()
            await asyncio.sleep(30)
        except asyncio.CancelledError as exc:
            raise lost_unless_cancelled(exc, "publishing") from exc

    task = asyncio.create_task(call())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
