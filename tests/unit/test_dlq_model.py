"""Dead letters decoded without a broker: bodies, queuewatch headers, x-death, filters."""

from __future__ import annotations

import datetime as dt
import random

from queuewatch import envelope as env
from queuewatch.dlq.acker import Acker
from queuewatch.dlq.decode import decode_body, for_publish, to_epoch_ms
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import Route, make_dead_letter


def dl(headers=None, body=b"{}", **props):  # type: ignore[no-untyped-def]
    return make_dead_letter(position=0, body=body, properties=props, headers=headers)


def test_body_kinds():
    assert decode_body(b'{"b":1,"a":2}')[0] == "json"
    assert decode_body(b'{"b":1,"a":2}')[1].startswith('{\n  "a": 2')
    assert decode_body(b"not json {")[0] == "text"
    assert decode_body(b"{broken", "application/json") == ("text", "{broken")
    kind, pretty = decode_body(b"\xff\x00abc")
    assert kind == "hex" and pretty.startswith("00000000  ff 00 61 62 63") and ".abc" in pretty


def test_queuewatch_headers_win_and_give_the_route():
    d = dl({env.H_DEAD_REASON: "failed", env.H_ERROR_TYPE: "KeyError", env.H_ATTEMPT: 5,
            env.H_ORIGINAL_EXCHANGE: "", env.H_ORIGINAL_ROUTING_KEY: "x",
            env.H_ORIGINAL_QUEUE: "jobs", env.H_DEAD_AT_MS: 1_700_000_000_000,
            env.H_REPLAY_COUNT: 2, "x-death": [{"queue": "other", "reason": "expired"}]},
           message_id="j1")
    assert d.death.source == "queuewatch" and d.death.reason == "failed"
    assert d.death.route == Route("", "jobs")  # default exchange: back by queue name
    assert d.replay_count == 2 and d.job_id == "j1" and d.death.attempts == 5


def test_x_death_picks_the_rejection_not_the_retry_expiry():
    t1 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    t2 = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    headers = {"id": "celery-task-1", "x-death": [
        {"queue": "retry.wait", "reason": "expired", "count": 2, "exchange": "retry",
         "routing-keys": [b"tasks"], "time": t2},
        {"queue": "tasks", "reason": "rejected", "count": 3, "exchange": "celery",
         "routing-keys": ["tasks"], "time": t1},
    ], "x-first-death-queue": "tasks"}
    d = dl(headers)
    assert d.job_id == "celery-task-1"
    assert (d.death.reason, d.death.original_queue, d.death.attempts) == ("rejected", "tasks", 5)
    assert d.death.route == Route("celery", "tasks")
    assert d.death.first_death_ms == to_epoch_ms(t1) and d.death.last_death_ms == to_epoch_ms(t2)


def test_no_death_info_means_no_route():
    assert dl({}).death.route is None and dl(None).death.source == "none"


def test_filters():
    now = env.now_ms()
    d = dl({env.H_DEAD_REASON: "failed", env.H_ERROR_TYPE: "app.errors.Timeout",
            env.H_ERROR_MESSAGE: "upstream slow", env.H_DEAD_AT_MS: now - 120_000,
            env.H_ORIGINAL_QUEUE: "q"}, body=b'{"customer": "acme"}', message_id="j9")
    assert DeadLetterFilter().matches(d) and DeadLetterFilter().is_empty
    assert DeadLetterFilter(error_type="Timeout").matches(d)
    assert DeadLetterFilter(error_type="app.errors.Timeout", reason="FAILED").matches(d)
    assert not DeadLetterFilter(error_type="ValueError").matches(d)
    assert DeadLetterFilter(text="acme").matches(d) and DeadLetterFilter(text="slow").matches(d)
    assert not DeadLetterFilter(text="zzz").matches(d)
    assert DeadLetterFilter(min_age=60, max_age=600).matches(d)
    assert not DeadLetterFilter(max_age=60).matches(d)
    assert DeadLetterFilter.for_jobs(["j9"]).matches(d)
    assert not DeadLetterFilter.for_jobs(["j1"]).matches(d)
    assert DeadLetterFilter(text="acme", min_age=1).describe() == {"text": "acme", "min_age": 1}


def test_for_publish_turns_bytes_into_byte_arrays_recursively():
    out = for_publish({"a": b"\xff", "t": {"l": [b"x", 1]}})
    assert out == {"a": bytearray(b"\xff"), "t": {"l": [bytearray(b"x"), 1]}}
    assert isinstance(out["t"]["l"][0], bytearray)


def test_epoch_ms_accepts_seconds_millis_and_datetimes():
    assert to_epoch_ms(1_700_000_000) == 1_700_000_000_000
    assert to_epoch_ms(1_700_000_000_123) == 1_700_000_000_123
    assert to_epoch_ms(dt.datetime(1970, 1, 1, 0, 0, 1)) == 1000
    assert to_epoch_ms("x") is None and to_epoch_ms(True) is None


def test_acker_acks_each_done_tag_exactly_once_and_never_a_held_one():
    rng = random.Random(7)
    for _ in range(2000):
        sent: list[tuple[int, bool]] = []
        acker = Acker(lambda tag, multiple, count=1, sent=sent: sent.append((tag, multiple)))
        tags = list(range(1, rng.randint(2, 60)))
        held = set(rng.sample(tags, rng.randint(0, min(3, len(tags)))))
        rng.shuffle(tags)
        for tag in tags:
            (acker.hold if tag in held else acker.done)(tag)
        acked: set[int] = set()
        for tag, multiple in sent:
            new = {t for t in range(1, tag + 1) if t not in acked} if multiple else {tag}
            assert not new & held and not (not multiple and tag in acked)
            acked |= new
        assert acked == set(tags) - held and acker.pending == 0
