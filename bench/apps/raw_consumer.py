"""The baseline: a raw aio-pika consume+ack loop (``python -m bench.apps.raw_consumer``).

No decoding, no bookkeeping: ack as soon as the job (nothing, a 5 ms sleep, or recording
the latency) is done. At most ``BENCH_CONCURRENCY`` jobs run at once, like a worker.
"""

from __future__ import annotations

import asyncio
import json

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench.apps import common


async def main() -> None:
    conn = await aio_pika.connect(common.AMQP_URL)
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=common.PREFETCH)
    queue = await channel.declare_queue(common.QUEUE, passive=True)
    slots = asyncio.Semaphore(common.CONCURRENCY)

    async def on_message(message: AbstractIncomingMessage) -> None:
        if common.JOB == "noop":
            await message.ack()
            return
        async with slots:
            if common.JOB == "io":
                await asyncio.sleep(common.IO_SECONDS)
            else:
                common.record_latency(json.loads(message.body)["ts"])
        await message.ack()

    await queue.consume(on_message)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
