"""The replay shovel's prefetch: shallow only on a classic DLQ that takes much back."""

from __future__ import annotations

import pytest

from queuewatch.dlq.shovel import SPLIT_PREFETCH, SPLIT_SHARE, SRC_PREFETCH, Plan


@pytest.mark.parametrize(("held", "quorum", "prefetch"), [
    (0.0, False, SRC_PREFETCH),
    (SPLIT_SHARE - 0.01, False, SRC_PREFETCH),
    (SPLIT_SHARE, False, SPLIT_PREFETCH),
    (0.5, False, SPLIT_PREFETCH),
    (0.99, False, SPLIT_PREFETCH),
    (0.5, True, SRC_PREFETCH),
    (0.99, True, SRC_PREFETCH),
])
def test_the_prefetch_follows_the_share_held_back_and_the_queue_type(
        held: float, quorum: bool, prefetch: int) -> None:
    assert Plan("jobs", 20_000, held).prefetch(quorum) == prefetch


def test_the_two_prefetches_differ() -> None:
    assert SPLIT_PREFETCH < SRC_PREFETCH and 0 < SPLIT_SHARE < 1
