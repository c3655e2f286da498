"""Helpers for the adversarial dead-letter tests (issue 15): dead letters as other clients
(Java, .NET, Go, pika, Dramatiq) leave them, published raw into a queue.

Publishing goes through aiormq under the test's aio-pika connection; importing
:mod:`queuewatch.broker` lets pamqp send what RabbitMQ takes (names such as
``svc|orders``, 64-bit doubles, timestamps beyond the year 9999), as those clients do.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aio_pika.abc import AbstractConnection
from pamqp.commands import Basic

import queuewatch.broker  # noqa: F401  (installs broker.fieldcodec)
from queuewatch import envelope as env
from queuewatch.broker.fieldcodec import RawTimestamp
from queuewatch.config import Settings

#: Exchange/queue names RabbitMQ accepts and pamqp refused.
ODD_NAMES = ("svc|orders", "заказы", "orders(v2)")
#: 200 characters: RabbitMQ takes it (up to 255 bytes), pamqp sends at most 127.
LONG_EXCHANGE = "x" * 200


def qw_headers(queue: str, *, exchange: str = "", routing_key: str | None = None,
               dead_at_ms: Any = None, **extra: Any) -> dict[str, Any]:
    """queuewatch's own dead-letter headers for a job of ``queue`` (as a worker parks it)."""
    now = env.now_ms()
    return {
        env.H_ATTEMPT: 3, env.H_DEAD_REASON: "failed", env.H_ERROR_TYPE: "ValueError",
        env.H_ERROR_MESSAGE: "boom", env.H_ORIGINAL_EXCHANGE: exchange,
        env.H_ORIGINAL_ROUTING_KEY: queue if routing_key is None else routing_key,
        env.H_ORIGINAL_QUEUE: queue, env.H_DEAD_AT_MS: now if dead_at_ms is None else dead_at_ms,
        env.H_REPLAY_COUNT: 0, **extra,
    }


def x_death_headers(queue: str, *, exchange: str = "", routing_key: str | None = None,
                    time: Any = None) -> dict[str, Any]:
    """RabbitMQ's ``x-death`` for a message rejected from ``queue`` (as foreign DLQs hold)."""
    return {"x-death": [{
        "count": 1, "reason": "rejected", "queue": queue, "exchange": exchange,
        "routing-keys": [queue if routing_key is None else routing_key],
        "time": RawTimestamp(10**17) if time is None else time,
    }]}


async def declare_route(connection: AbstractConnection, exchange: str, queue: str,
                        key: str = "k") -> None:
    """A direct exchange ``exchange`` bound to queue ``queue`` with routing key ``key``."""
    channel = await connection.channel()
    raw = await channel.get_underlay_channel()
    try:
        await raw.queue_declare(queue, durable=True)
        if exchange:
            await raw.exchange_declare(exchange, exchange_type="direct", durable=True)
            await raw.queue_bind(queue, exchange, routing_key=key)
    finally:
        await channel.close()


async def publish_raw(
    connection: AbstractConnection, queue: str,
    messages: Sequence[tuple[str | None, Mapping[str, Any] | None, bytes]],
    delivery_mode_raw: int | None = None, **props: Any,
) -> None:
    """Publish ``(message_id, headers, body)`` messages into ``queue`` (confirmed), in order.
    ``props``: further AMQP properties for every message; ``delivery_mode_raw``: a delivery
    mode pamqp refuses to build (other clients send any octet), set after validation."""
    channel = await connection.channel(publisher_confirms=True)
    raw = await channel.get_underlay_channel()
    try:
        await raw.queue_declare(queue, durable=True)
        for mid, headers, body in messages:
            properties = Basic.Properties(
                message_id=mid, headers=dict(headers) if headers is not None else None,
                delivery_mode=2, **props)
            if delivery_mode_raw is not None:
                properties.delivery_mode = delivery_mode_raw
            await raw.basic_publish(body, exchange="", routing_key=queue, properties=properties)
    finally:
        await channel.close()


async def take_ids(connection: AbstractConnection, queue: str, idle: float = 0.5) -> list[str]:
    """Consume (auto-ack) everything in ``queue`` until it is empty and quiet; message ids
    (or Dramatiq body ids) in delivery order."""
    channel = await connection.channel()
    raw = await channel.get_underlay_channel()
    got: list[str] = []
    loop = asyncio.get_running_loop()
    last = loop.time()

    async def on_message(message: Any) -> None:
        nonlocal last
        got.append(str(message.header.properties.message_id))
        last = loop.time()

    try:
        await raw.basic_consume(queue, on_message, no_ack=True)
        while True:
            await asyncio.sleep(idle / 2)
            if loop.time() - last > idle and \
                    (await raw.queue_declare(queue, passive=True)).message_count == 0:
                return got
    finally:
        await channel.close()


def dramatiq_body(queue: str, message_id: str) -> bytes:
    """A Dramatiq message (its id lives in the JSON body, not in ``message_id``)."""
    return json.dumps({
        "queue_name": queue, "actor_name": "send_email", "args": [1], "kwargs": {},
        "options": {"retries": 3}, "message_id": message_id,
        "message_timestamp": env.now_ms(),
    }).encode()


def _dramatiq_dead_letters(url: str, queue: str, ids: list[str]) -> None:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(f"{queue}.XQ", durable=True)
        ch.queue_declare(queue, durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.XQ"})
        for mid in ids:  # as Dramatiq publishes: no message_id property
            ch.basic_publish("", queue, dramatiq_body(queue, mid),
                             pika.BasicProperties(delivery_mode=2, priority=0))
        for _ in ids:
            method, _props, _body = ch.basic_get(queue)
            assert method is not None
            ch.basic_reject(method.delivery_tag, requeue=False)
        for _ in range(100):
            if ch.queue_declare(f"{queue}.XQ", passive=True).method.message_count == len(ids):
                break
            conn.sleep(0.05)
    finally:
        conn.close()


async def dramatiq_dead_letters(settings: Settings, queue: str, n: int) -> list[str]:
    """``n`` Dramatiq messages dead-lettered by RabbitMQ into ``queue.XQ`` the way Dramatiq
    declares it (``x-dead-letter-exchange: ""``, ``x-dead-letter-routing-key: queue.XQ``),
    then rejected; published with pika, as Dramatiq does. Returns their Dramatiq ids."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    await asyncio.to_thread(_dramatiq_dead_letters, settings.amqp_url_for(), queue, ids)
    return ids
