"""Export encoding: every AMQP value type survives JSON unchanged."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest

from queuewatch.dlq.codec import CodecError, decode_table, encode_table


def test_round_trip_of_every_value_type():
    table = {
        "s": "text \u2713", "i": 2**40, "neg": -3, "f": 0.1, "t": True, "none": None,
        "b": b"\xff\x00", "ba": bytearray(b"\x01"), "d": decimal.Decimal("1.25"),
        "when": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        "nested": {"deeper": {"l": [1, "a", b"\xfe", {"x": None}]}},
        "x-death": [{"count": 1, "time": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                     "routing-keys": ["q"]}],
    }
    encoded = json.loads(json.dumps(encode_table(table)))
    back = decode_table(encoded)
    assert back == table
    assert type(back["b"]) is bytes and type(back["ba"]) is bytearray
    assert isinstance(back["nested"]["deeper"]["l"][2], bytes)


def test_a_plain_object_in_the_file_is_an_error():
    with pytest.raises(CodecError):
        decode_table({"h": {"unknown": 1}})
