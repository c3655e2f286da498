""":func:`queuewatch.cli.cmd_queue_ops.check_queue_name`: every name RabbitMQ takes passes (any
UTF-8 up to 255 bytes, the broker edge's own length rule); empty, control characters, not
UTF-8 and over 255 bytes are one ConfigError that says which."""

from __future__ import annotations

import pytest

from queuewatch.broker.fieldcodec import sendable_name
from queuewatch.cli.cmd_queue_ops import check_queue_name
from queuewatch.errors import ConfigError


@pytest.mark.parametrize("name", [
    "svc|orders", "orders (v2)", "bad name!", "заказы", "a/b#c@d", "amq.gen-x1",
    "queuewatch.delay.3", "jobs.dlq", "x" * 255, "é" * 127 + "a", "😀" * 63 + "abc",
])
def test_names_rabbitmq_takes_pass(name: str) -> None:
    assert check_queue_name(name) == name
    assert sendable_name(name, "queue") is None  # the same length rule as the DLQ commands


@pytest.mark.parametrize(("name", "said"), [
    ("", "queue name must not be empty"),
    ("a\x00b", "contains a control character (U+0000)"),
    ("a\nb", "contains a control character (U+000A)"),
    ("a\x7fb", "contains a control character (U+007F)"),
    ("a\x85b", "contains a control character (U+0085)"),
    ("a\udcffb", "is not valid UTF-8"),
    ("x" * 256, "the queue name is 256 bytes: AMQP names are at most 255 bytes"),
    ("é" * 128, "the queue name is 256 bytes"),
])
def test_bad_names_are_one_clear_error(name: str, said: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check_queue_name(name)
    assert said in str(exc.value)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 200  # one short line


def test_the_argument_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^target queue name must not be empty$"):
        check_queue_name("", "target queue")
