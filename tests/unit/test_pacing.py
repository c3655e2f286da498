"""The poll interval stretches after a slow poll, says so, and shrinks back."""

from __future__ import annotations

import asyncio

from queuewatch.monitor.core import poll_forever
from queuewatch.monitor.model import BrokerInfo, Snapshot
from queuewatch.monitor.pacing import MAX_STRETCHED, STRETCH_FACTOR, Pace, pace


def test_a_quick_poll_keeps_the_interval():
    # Given a 5 s interval, when a poll took 0.4 s (or none was measured yet)
    for took in (0.4, 5.0, None):
        p = pace(5.0, took, 1000)
        # Then the pause is the interval, not stretched, and nothing is said
        assert (p.pause, p.stretched, p.text()) == (5.0, False, None)


def test_a_slow_poll_stretches_the_interval_and_says_so():
    # Given a 5 s interval, when a poll of 20,000 queues took 8.4 s
    p = pace(5.0, 8.4, 20_000)
    # Then the next pause is 1.5 x 8.4 s, and the console line says why
    assert p.stretched and p.pause == 8.4 * STRETCH_FACTOR
    assert p.text() == "polling every 13s (8.4s per poll at 20,000 queues; interval 5s)"


def test_the_stretch_is_capped_and_sub_second_polls_never_stretch():
    # A poll of 100 s pauses at most MAX_STRETCHED; a configured interval above the cap stays
    assert pace(5.0, 100.0).pause == MAX_STRETCHED
    assert pace(120.0, 100.0).pause == 120.0
    # A 0.5 s or a 4 s poll with a 0.2 s interval (tests, demos on a loaded machine) keeps
    # the interval: only polls longer than the broker's 5 s statistics interval stretch it
    assert not pace(0.2, 0.5).stretched and not pace(0.2, 4.0).stretched
    assert pace(0.2, 6.0).pause == 9.0


async def test_poll_forever_waits_the_stretched_pause():
    # Given a 0.01 s interval and a poll whose snapshot says it took 6 s, then quick ones
    took = iter([6.0, 0.1, 0.1])
    paces: list[Pace] = []
    seen: list[Snapshot] = []
    stop = asyncio.Event()

    async def poll() -> Snapshot:
        return Snapshot(taken_at=0.0, vhost="v", broker=BrokerInfo(url="http://x"),
                        poll_seconds=next(took))

    # When the loop runs for 0.5 s
    task = asyncio.create_task(poll_forever(poll, seen.append, 0.01, stop=stop,
                                            on_pace=paces.append))
    await asyncio.sleep(0.5)
    # Then it polled once and waits out the stretched 9 s pause (at 0.01 s it would have
    # polled dozens of times)
    assert len(seen) == 1 and [p.pause for p in paces] == [6.0 * STRETCH_FACTOR]
    stop.set()
    await asyncio.wait_for(task, 5)
