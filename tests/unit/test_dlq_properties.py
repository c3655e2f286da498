"""Property tests (hypothesis) over dead-letter headers, properties and bodies: whatever an
AMQP client can put in a message, the DLQ's decoding, display and codec never raise, the
export round-trips it exactly, and a replay can send it back.

Header tables are generated as Python values, put on the wire by pamqp (as queuewatch's
broker edge configures it: doubles, timestamps of any size, names up to 255 bytes) and read
back, so the inputs are what a DLQ delivery really holds. Kept to a few seconds.
"""

from __future__ import annotations

import decimal
import json
import struct
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pamqp.commands import Basic

import queuewatch.broker  # noqa: F401  (installs broker.fieldcodec)
from queuewatch.broker.fieldcodec import RawTimestamp, timestamp_from_wire
from queuewatch.dlq.codec import decode_table, encode_table
from queuewatch.dlq.decode import decode_body, format_ms, jsonable
from queuewatch.dlq.exportfile import export_line, read_export
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import body_job_id, make_dead_letter
from queuewatch.dlq.replay import classify, replay_properties
from queuewatch.envelope import H_DEAD_AT_MS, H_ORIGINAL_EXCHANGE, H_ORIGINAL_QUEUE, H_REPLAY_COUNT

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- what a field table can hold (AMQP 0-9-1 as RabbitMQ and its clients use it) -----------
names = st.text(min_size=1, max_size=40)  # up to 160 bytes of UTF-8
timestamps = st.integers(0, 2**64 - 1).map(timestamp_from_wire)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.binary(max_size=20).map(bytearray),
    st.decimals(allow_nan=False, allow_infinity=False, places=2,
                min_value=decimal.Decimal("-1e6"), max_value=decimal.Decimal("1e6")),
    timestamps,
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)), max_leaves=12)
#: queuewatch's own death headers and RabbitMQ's, with values of any type.
known_keys = st.sampled_from([
    "x-death", "x-first-death-queue", "x-first-death-exchange", "x-first-death-reason",
    H_DEAD_AT_MS, H_ORIGINAL_EXCHANGE, H_ORIGINAL_QUEUE, H_REPLAY_COUNT, "x-qw-attempt",
    "x-qw-dead-reason", "x-qw-error-type", "x-qw-error-message", "x-qw-published-ms", "id"])
x_death = st.lists(st.dictionaries(st.sampled_from(
    ["count", "reason", "queue", "exchange", "routing-keys", "time"]), values, max_size=6),
    max_size=3)
tables = st.one_of(
    st.dictionaries(st.one_of(known_keys, names), values, max_size=8),
    st.builds(lambda xd, t: {"x-death": xd, **t}, x_death,
              st.dictionaries(known_keys, values, max_size=4)),
)
bodies = st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode),
                   st.builds(lambda v: json.dumps(v, default=str).encode(),
                             st.dictionaries(st.sampled_from(
                                 ["message_id", "actor_name", "id", "task", "x"]), values)))


def on_the_wire(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` as a DLQ delivery holds it: encoded by pamqp, then decoded."""
    raw = Basic.Properties(headers=table).marshal()
    props = Basic.Properties()
    props.unmarshal(struct.unpack(">H", raw[:2])[0], raw[2:])
    return dict(props.headers or {})


def wire_bytes(table: dict[str, Any]) -> bytes:
    return Basic.Properties(headers=table).marshal()


@FAST
@given(tables, bodies, st.sampled_from([None, "application/json", "text/plain", "x/y"]))
def test_decoding_and_display_never_raise(table, body, content_type):
    # Given any header table as it arrives, and any body
    headers = on_the_wire(table)
    # When a dead letter is built and shown every way the CLI and the console show it
    dl = make_dead_letter(position=0, body=body, headers=headers,
                          properties={"content_type": content_type, "message_id": None})
    summary = dl.summary()
    json.dumps(summary)
    json.dumps(jsonable(dict(dl.headers)), allow_nan=False)
    shown = [format_ms(dl.death.first_death_ms), format_ms(dl.death.last_death_ms),
             dl.body_pretty, str(dl.age_seconds)]
    DeadLetterFilter(text="a", min_age=1.0, reason="failed", error_type="X").matches(dl)
    classify(dl, force=True, max_replays=3)
    # Then nothing raised, everything shown is text, and the job id is text or None
    assert all(isinstance(text, str) for text in shown)
    assert dl.job_id is None or isinstance(dl.job_id, str)


@FAST
@given(tables)
def test_export_import_round_trips_headers_exactly(table):
    # Given any header table as it arrives
    headers = on_the_wire(table)
    # When it goes through the export codec and JSON and back
    back = decode_table(json.loads(json.dumps(encode_table(headers))))
    # Then it is sent as the same bytes
    assert wire_bytes(back) == wire_bytes(headers)


@FAST
@given(tables, bodies, st.sampled_from([None, "application/json"]),
       st.one_of(st.none(), st.integers(0, 2**64 - 1).map(timestamp_from_wire)))
def test_an_export_line_reads_back_as_the_same_message(table, body, content_type, timestamp):
    # Given a delivery with any headers, body and properties
    props = Basic.Properties(headers=on_the_wire(table) or None, content_type=content_type,
                             message_id="m", timestamp=timestamp, delivery_mode=2, priority=3)
    line = export_line(0, "q.dlq", props, body)
    # When its export line is read back
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "e.jsonl"
        path.write_text(line + "\n", encoding="utf-8")
        (read,) = list(read_export(path))
    # Then it is the same message on the wire
    assert read.error is None and read.body == body and read.properties is not None
    props.headers = {k: v for k, v in (props.headers or {}).items() if k != "x-delivery-count"} or None
    assert read.properties.marshal() == props.marshal()


@FAST
@given(tables, bodies)
@example({H_REPLAY_COUNT: 1e300, "x-qw-attempt": 2**63 - 1}, b"")
def test_what_was_read_can_be_sent_back(table, body):
    # Given any dead letter as it arrives
    headers = on_the_wire(table)
    props = Basic.Properties(headers=headers or None, message_id="m", delivery_mode=2)
    dl = make_dead_letter(position=0, body=body, headers=headers, properties={"message_id": "m"})
    # When its replay properties are built and put on the wire
    out = replay_properties(props, dl, "guest")
    # Then pamqp encodes them (only a route can make a dead letter unpublishable)
    assert out.marshal()


@FAST
@given(st.binary(max_size=300), st.one_of(st.none(), st.text(max_size=20)))
def test_bodies_never_break_decoding(body, content_type):
    kind, text = decode_body(body, content_type)
    assert kind in ("json", "text", "hex") and isinstance(text, str)
    body_job_id(body)


def test_a_timestamp_no_date_holds_is_kept_as_its_number():
    # x-death time 10^17 (the 'year 3170843 is out of range')
    value = on_the_wire({"t": RawTimestamp(10**17)})["t"]
    assert isinstance(value, RawTimestamp) and value == 10**17
    assert format_ms(10**17) == "100000000000000000 (not a date)"
