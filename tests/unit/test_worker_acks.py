"""The ack coalescer's plan: a ``multiple`` ack covers only tags settled here, consecutive
from the channel's first; everything past a gap is acked alone, at once."""

from __future__ import annotations

from queuewatch.worker.acks import ChannelAcks


def test_a_run_of_consecutive_tags_is_one_multiple_ack() -> None:
    acks = ChannelAcks(channel=None)
    assert acks.plan([1, 2, 3]) == [(3, True)]
    assert acks.plan([5, 4]) == [(5, True)]


def test_a_tag_not_settled_here_stops_the_multiple_ack() -> None:
    acks = ChannelAcks(channel=None)
    # tag 3 still runs (or was never seen): 4 and 5 must not wait for it, nor be covered
    assert acks.plan([1, 2, 4, 5]) == [(2, True), (4, False), (5, False)]
    # when 3 is acked, it alone is covered: 4 and 5 were acked already
    assert acks.plan([3]) == [(3, True)]
    assert acks.plan([6]) == [(6, True)]


def test_a_rejected_tag_lets_the_cursor_pass_but_is_not_the_acked_tag() -> None:
    acks = ChannelAcks(channel=None)
    acks.settled(1)  # rejected (frame written) before the others finished
    assert acks.plan([2, 3]) == [(3, True)]
    acks.settled(5)
    assert acks.plan([4]) == [(4, True)]
    assert acks.plan([6]) == [(6, True)]


def test_only_settled_tags_below_the_cursor_send_nothing() -> None:
    acks = ChannelAcks(channel=None)
    acks.settled(1)
    acks.settled(2)
    assert acks.plan([]) == []
    assert acks.plan([3]) == [(3, True)]


def test_nothing_is_acked_twice_when_a_gap_closes_late() -> None:
    acks = ChannelAcks(channel=None)
    assert acks.plan([2]) == [(2, False)]
    assert acks.plan([3]) == [(3, False)]
    # 1 ends last: only it is acked (2 and 3 were acked alone; a second ack of either
    # would close the channel with "unknown delivery tag")
    assert acks.plan([1]) == [(1, True)]
    assert acks.plan([4, 5]) == [(5, True)]


def test_a_cursor_stuck_behind_a_long_job_stops_remembering(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import queuewatch.worker.acks as acks_module

    monkeypatch.setattr(acks_module, "MAX_REMEMBERED", 5)
    acks = ChannelAcks(channel=None)
    # tag 1 runs for hours; jobs after it are acked alone, and remembered until the cap
    assert acks.plan([2, 3, 4]) == [(2, False), (3, False), (4, False)]
    assert acks.plan([5, 6, 7]) == [(5, False), (6, False), (7, False)]
    assert len(acks._resolved) == 0  # past the cap: forgotten
    # from then on every ack is single, the long job's too (never a multiple that could
    # cover a tag it no longer tracks)
    assert acks.plan([1, 8, 9]) == [(1, False), (8, False), (9, False)]
    acks.settled(10)
    assert acks.plan([11]) == [(11, False)]
