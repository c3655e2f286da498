"""Worker pieces without a broker: payload decoding, the token bucket, dead-letter headers."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from queuewatch import envelope
from queuewatch.topology import RetryPolicy, delay_routing_key
from queuewatch.worker import MalformedPayload
from queuewatch.worker.decode import decode_body
from queuewatch.worker.outcomes import Failure, dead_letter_copy, original_route, retry_copy
from queuewatch.worker.process import Counts
from queuewatch.worker.ratelimit import TokenBucket


@pytest.mark.parametrize("body, ctype, expected", [
    (b'{"a": 1}', "application/json", {"a": 1}),
    (b'[1]', "application/vnd.x+json; charset=utf-8", [1]),
    ("héllo".encode(), "text/plain", "héllo"),
    (b"\x00raw", "application/octet-stream", b"\x00raw"),
    (b"\x00raw", None, b"\x00raw"),
])
def test_decode_by_content_type(body, ctype, expected):
    assert decode_body(body, ctype, 1024) == expected


@pytest.mark.parametrize("body, ctype, words", [
    (b"{nope", "application/json", "not JSON"),
    (b"\xff{}", "application/json", "not UTF-8"),
    (b"\xff", "text/plain", "not UTF-8"),
    (b"<a/>", "application/xml", "unsupported content type"),
    (b"x" * 11, None, "exceeds the limit of 10 bytes"),
])
def test_malformed_bodies_say_why(body, ctype, words):
    with pytest.raises(MalformedPayload, match=words):
        decode_body(body, ctype, 10 if len(body) > 10 else 1024)


def test_token_bucket_allows_rate_per_second():
    now = [0.0]
    bucket = TokenBucket(10, clock=lambda: now[0])
    assert bucket.try_acquire() and not bucket.try_acquire()
    assert bucket.wait_time() == pytest.approx(0.1)
    now[0] += 0.1
    assert bucket.try_acquire()
    now[0] += 5  # idle time does not pile up more than the burst
    assert bucket.try_acquire() and not bucket.try_acquire()


async def test_token_bucket_acquire_waits():
    bucket = TokenBucket(50)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(6):
        await bucket.acquire()
    assert loop.time() - start >= 0.09


def _message(**kw):  # type: ignore[no-untyped-def]
    base = dict(headers={envelope.H_ATTEMPT: 1, "tenant": "x"}, exchange="", routing_key="jobs")
    base.update(kw)
    return SimpleNamespace(**base)


def test_retry_copy_increments_attempt_and_goes_through_delay_levels():
    msg = _message()
    copy = retry_copy(msg, "jobs", attempt=1, delay=3, levels=4,  # type: ignore[arg-type]
                      failure=Failure("ValueError", "bad"))
    assert copy.exchange == "queuewatch.delay.3" and copy.routing_key == delay_routing_key(3, 4)
    h = copy.headers
    assert h[envelope.H_ATTEMPT] == 2 and h[envelope.H_TARGET] == "jobs" and h["tenant"] == "x"
    assert h[envelope.H_FIRST_FAILED_MS] == h[envelope.H_LAST_FAILED_MS]
    assert h[envelope.H_ERROR_TYPE] == "ValueError"
    # a zero backoff still goes through the levels (a full queue must not nack the retry)
    assert retry_copy(msg, "jobs", 1, 0, 4, Failure("E", "")).routing_key == delay_routing_key(1, 4)  # type: ignore[arg-type]


def test_dead_letter_copy_carries_everything_replay_needs():
    msg = _message(headers={envelope.H_ATTEMPT: 3, envelope.H_FIRST_FAILED_MS: 5,
                            envelope.H_TARGET: "jobs"}, exchange="queuewatch.delivery",
                   routing_key="0.1.0")
    failure = Failure("KeyError", "m" * 5000, "Traceback\n" + "x" * 20_000)
    copy = dead_letter_copy(msg, "jobs", 3, "failed", failure, "w1")  # type: ignore[arg-type]
    h = copy.headers
    assert (copy.exchange, copy.routing_key) == ("", "jobs.dlq")
    assert h[envelope.H_FIRST_FAILED_MS] == 5 and h[envelope.H_LAST_FAILED_MS] >= 5
    assert h[envelope.H_DEAD_REASON] == "failed" and h[envelope.H_WORKER] == "w1"
    assert (h[envelope.H_ORIGINAL_EXCHANGE], h[envelope.H_ORIGINAL_ROUTING_KEY]) == ("", "jobs")
    assert len(h[envelope.H_TRACEBACK]) <= envelope.MAX_TRACEBACK_CHARS + 30
    assert len(h[envelope.H_ERROR_MESSAGE]) == 2000 and envelope.H_TARGET not in h
    # the reason and error type again without the x- prefix (a filtered shovel replay)
    assert (h["qw-dead-reason"], h["qw-error-type"], h["qw-error-name"]) == \
        ("failed", "KeyError", "KeyError")
    json.dumps(h)  # plain values only


def test_copies_carry_the_replay_count_and_count_a_shovel_replay():
    failure = Failure("E", "boom")
    # a first death: count 0, written so that a shovel replay can match it
    first = dead_letter_copy(_message(), "jobs", 3, "failed", failure, "w1")  # type: ignore[arg-type]
    assert first.headers[envelope.H_REPLAY_COUNT] == 0
    # a job a shovel replayed (it came through queuewatch.replay.<id>) with count 1 in the
    # old header: the copies say 2, in the new header only, and its route is its queue
    replayed = _message(headers={envelope.H_ATTEMPT: 5, envelope.LEGACY_REPLAY_COUNT: 1},
                        exchange=envelope.REPLAY_EXCHANGE_PREFIX + "abc", routing_key="jobs")
    for copy in (dead_letter_copy(replayed, "jobs", 1, "failed", failure, "w1"),  # type: ignore[arg-type]
                 retry_copy(replayed, "jobs", 1, 1, 4, failure)):  # type: ignore[arg-type]
        assert copy.headers[envelope.H_REPLAY_COUNT] == 2
        assert envelope.LEGACY_REPLAY_COUNT not in copy.headers
    dead = dead_letter_copy(replayed, "jobs", 1, "failed", failure, "w1")  # type: ignore[arg-type]
    assert (dead.headers[envelope.H_ORIGINAL_EXCHANGE],
            dead.headers[envelope.H_ORIGINAL_ROUTING_KEY]) == ("", "jobs")
    # a retry of it (through the delay levels) is not counted again
    again = _message(headers=dict(dead.headers), exchange="queuewatch.delivery")
    assert dead_letter_copy(again, "jobs", 2, "failed", failure, "w1").headers[  # type: ignore[arg-type]
        envelope.H_REPLAY_COUNT] == 2


def test_replay_count_reads_the_old_header_and_ignores_garbage():
    assert envelope.replay_count_of({envelope.LEGACY_REPLAY_COUNT: 4}) == 4
    assert envelope.replay_count_of({envelope.H_REPLAY_COUNT: 1,
                                     envelope.LEGACY_REPLAY_COUNT: 4}) == 1
    assert envelope.replay_count_of({envelope.H_REPLAY_COUNT: "x"}) == 0
    assert envelope.replay_count_of({envelope.H_REPLAY_COUNT: -3}) == 0
    assert envelope.replay_count_of(None) == 0
    assert envelope.is_shovel_replay("queuewatch.replay.1f") and not envelope.is_shovel_replay("")


def test_original_route_keeps_a_custom_exchange():
    assert original_route(_message(exchange="orders-x", routing_key="eu"), "jobs") == ("orders-x", "eu")  # type: ignore[arg-type]


def test_counts_take_resets():
    c = Counts(succeeded=2, failed=1)
    snap = c.take()
    assert (snap.succeeded, snap.failed) == (2, 1) and (c.succeeded, c.failed) == (0, 0)


def test_retry_policy_backoff_used_by_the_worker():
    p = RetryPolicy(max_attempts=4, backoff_initial=1, backoff_multiplier=2, jitter=0)
    assert [p.delay_for(a) for a in (1, 2, 3)] == [1, 2, 4]
