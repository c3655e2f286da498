"""Declare many queues quickly (scale tests): ``n`` durable queues ``many-00000``.. over a few
channels at once, every 10th holding one message."""

from __future__ import annotations

import asyncio

import aio_pika

LANES = 8


async def declare_many(connection: aio_pika.abc.AbstractConnection, n: int,
                       prefix: str = "many-") -> list[str]:
    names = [f"{prefix}{i:05d}" for i in range(n)]

    async def lane(k: int) -> None:
        ch = await connection.channel()
        for i in range(k, n, LANES):
            await ch.declare_queue(names[i], durable=True)
            if i % 10 == 0:
                await ch.default_exchange.publish(aio_pika.Message(b"{}"), names[i])
        await ch.close()

    await asyncio.gather(*(lane(k) for k in range(LANES)))
    return names
