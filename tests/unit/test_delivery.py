"""The worker's light delivery reads the same values as aio-pika's IncomingMessage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aio_pika.exceptions import ChannelInvalidStateError
from aio_pika.message import IncomingMessage
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from queuewatch.broker.delivery import Delivery

FIELDS = ("body", "headers", "message_id", "content_type", "content_encoding", "priority",
          "correlation_id", "reply_to", "delivery_mode", "expiration", "timestamp", "type",
          "user_id", "app_id", "consumer_tag", "delivery_tag", "exchange", "routing_key",
          "redelivered", "body_size")


class _Channel:
    is_closed = False


def _raw(**props: object) -> DeliveredMessage:
    deliver = spec.Basic.Deliver(consumer_tag="ctag", delivery_tag=7, redelivered=True,
                                 exchange="jobs.x", routing_key="jobs")
    header = ContentHeader(body_size=5, properties=spec.Basic.Properties(**props))
    return DeliveredMessage(delivery=deliver, header=header, body=b"hello", channel=_Channel())


@pytest.mark.parametrize("props", [
    {},
    {"content_type": "application/json", "content_encoding": "utf-8", "priority": 3,
     "correlation_id": "c1", "reply_to": "r", "delivery_mode": 2, "expiration": "1500",
     "message_id": "m1", "timestamp": datetime(2026, 11, 30, tzinfo=UTC),
     "message_type": "t", "user_id": "guest", "app_id": "app",
     "headers": {"x-attempt": 2, "x-death": [{"count": 1, "queue": "jobs"}]}},
])
def test_every_field_reads_as_aio_pika_reads_it(props: dict[str, object]) -> None:
    light, full = Delivery(_raw(**props)), IncomingMessage(_raw(**props))
    assert {f: getattr(light, f) for f in FIELDS} == {f: getattr(full, f) for f in FIELDS}


def test_a_closed_channel_raises_as_aio_pika_does() -> None:
    raw = _raw()
    raw.channel.is_closed = True  # type: ignore[misc]
    with pytest.raises(ChannelInvalidStateError):
        _ = Delivery(raw).channel
    with pytest.raises(ChannelInvalidStateError):
        _ = IncomingMessage(raw).channel
