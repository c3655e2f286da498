"""The replay shovel's prefetch: shallow only when the DLQ takes much back."""
from __future__ import annotations

import pytest

from queuewatch.dlq.shovel import SPLIT_PREFETCH, SPLIT_SHARE, SRC_PREFETCH, Plan


@pytest.mark.parametrize(("held", "prefetch"), [
    (0.0, SRC_PREFETCH),
    (SPLIT_SHARE - 0.01, SRC_PREFETCH),
    (SPLIT_SHARE, SPLIT_PREFETCH),
    (0.5, SPLIT_PREFETCH),
    (0.99, SPLIT_PREFETCH),
])
def test_the_prefetch_follows_the_share_held_back(held: float, prefetch: int) -> None:
    assert Plan("jobs", 20_000, held).prefetch() == prefetch


def test_the_two_prefetches_differ() -> None:
    assert SPLIT_PREFETCH < SRC_PREFETCH and 0 < SPLIT_SHARE < 1
