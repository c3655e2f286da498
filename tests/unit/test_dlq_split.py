"""The broker's side of a filtered shovel replay selects exactly what the filter selects.

RabbitMQ's headers exchange is simulated here the way it matches (``x-match: all``; a
``None`` binding value: the header must be there; ``x-`` headers ignored); the integration
tests (tests/integration/test_dlq_filtered_shovel.py) run the same bindings on the broker.
"""

from __future__ import annotations

import itertools
from typing import Any

from queuewatch import envelope as env
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import make_dead_letter
from queuewatch.dlq.split import broker_can_filter, header_sets, settled_sets

ERROR_TYPES = ["TimeoutError", "asyncio.TimeoutError", "a.b.TimeoutError", "ValueError",
               "TimeoutErrorX", "XTimeoutError", "Outer.Inner", "Inner", "", "timeouterror"]
REASONS = ["failed", "FAILED", "Failed", "timeout", "non-retryable", "cancelled by operator", ""]


def binding_matches(binding: dict[str, Any], headers: dict[str, Any]) -> bool:
    """RabbitMQ's headers exchange, ``x-match: all``: ``x-`` keys are not compared."""
    return all(k in headers and (v is None or headers[k] == v)
               for k, v in binding.items() if not k.startswith("x-"))


def dead_letter_headers(error_type: str, reason: str) -> dict[str, Any]:
    return {env.H_DEAD_REASON: reason, env.H_ERROR_TYPE: error_type,
            env.H_ORIGINAL_QUEUE: "jobs", **env.plain_death_headers(reason, error_type)}


def test_what_the_broker_sends_on_is_exactly_what_the_filter_selects() -> None:
    filters = [DeadLetterFilter(error_type=e) for e in ERROR_TYPES if e] + \
        [DeadLetterFilter(reason=r) for r in REASONS if r] + \
        [DeadLetterFilter(error_type=e, reason=r)
         for e, r in itertools.product(["TimeoutError", "asyncio.TimeoutError"], ["Failed"])]
    for flt in filters:
        assert broker_can_filter(flt)
        for et, reason in itertools.product(ERROR_TYPES, REASONS):
            headers = dead_letter_headers(et, reason)
            dl = make_dead_letter(position=0, body=b"{}", properties={}, headers=headers)
            sent_on = any(binding_matches(b, headers) for b in header_sets(flt))
            # Then the broker sends on exactly what Python's filter matches
            assert sent_on == flt.matches(dl), (flt, et, reason)
            # And what it holds back carrying the plain headers is surely settled
            settled = any(binding_matches(b, headers) for b in settled_sets(flt))
            assert settled or sent_on


def test_without_the_plain_headers_the_broker_sends_nothing_on_and_asks_for_a_look() -> None:
    flt = DeadLetterFilter(error_type="TimeoutError")
    old = {env.H_DEAD_REASON: "failed", env.H_ERROR_TYPE: "TimeoutError",
           env.H_ORIGINAL_QUEUE: "jobs"}
    assert not any(binding_matches(b, old) for b in header_sets(flt))
    assert not any(binding_matches(b, old) for b in settled_sets(flt))


def test_only_error_type_and_reason_are_left_to_the_broker() -> None:
    assert broker_can_filter(DeadLetterFilter())
    assert not broker_can_filter(DeadLetterFilter(text="acme"))
    assert not broker_can_filter(DeadLetterFilter(error_type="X", max_age=60))
    assert not broker_can_filter(DeadLetterFilter.for_jobs(["a"]))
    assert not broker_can_filter(DeadLetterFilter(error_type=""))


def test_replay_of_names_the_shovel_of_a_split_exchange_only() -> None:
    from queuewatch.dlq.split import exchange_names, look_names, replay_of

    shovel = "queuewatch-replay-0123456789ab"
    split, held = exchange_names(shovel)
    assert replay_of(split) == shovel
    assert [replay_of(x) for x in (held, look_names(shovel)[0], "amq.direct", "")] == [None] * 4
