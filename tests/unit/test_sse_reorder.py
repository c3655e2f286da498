"""Each job's events go to an SSE client in their real order, with ids that never skip."""

from __future__ import annotations

import time

from queuewatch.events.model import Event, Source
from queuewatch.jobs.reorder import Reorder
from queuewatch.jobs.sse import Subscriber, format_id, parse_id

SRC = Source("test")


def ev(kind: str, job: str) -> Event:
    return Event(kind, job, "q", 1, SRC)


def test_a_late_accepted_goes_before_its_job_and_ids_mark_what_was_sent() -> None:
    # Given a stream where job b's started and succeeded came before its accepted
    order = Reorder(lambda job, pos: job == "a")  # the index knows only a's accepted
    order.feed([((1, 0), ev("started", "a")), ((2, 0), ev("started", "b")),
                ((2, 1), ev("succeeded", "a"))])
    # Then nothing goes out while b waits for its accepted
    assert order.release() == [] and 0 < (order.due_in() or 0) <= 1.0
    order.feed([((3, 0), ev("succeeded", "b")), ((4, 0), ev("accepted", "b"))])
    out = order.release()
    # And b's accepted is sent before b's first event; ids never run ahead of what was sent
    assert [(e.kind, e.job_id) for _, e, _ in out] == [
        ("started", "a"), ("accepted", "b"), ("started", "b"), ("succeeded", "a"),
        ("succeeded", "b")]
    ids = [None if item is None else (item[0], item[1].kind, item[1].job_id) for item, _, _ in out]
    assert ids == [((1, 0), "started", "a"), None, None, None, ((4, 0), "accepted", "b")]
    # And later events of known jobs pass straight through with their own ids
    order.feed([((5, 0), ev("started", "b"))])
    assert [item and item[0] for item, _, _ in order.release()] == [(5, 0)]


def test_a_job_without_accepted_is_sent_after_the_hold() -> None:
    order = Reorder(lambda job, pos: False, hold=0.05)
    order.feed([((1, 0), ev("started", "foreign"))])
    assert order.release() == []
    time.sleep(0.06)
    assert [item and item[0] for item, _, _ in order.release()] == [(1, 0)]


def test_event_ids_name_the_event_and_parse_strictly() -> None:
    assert format_id((12, 3), "ab12") == "12-3-ab12"
    assert format_id((12, 3), "evil\nid: 9-9") == "12-3"  # never a line break in an id
    assert parse_id("12-3") == ((12, 3), None)
    assert parse_id("12-3-ab12") == ((12, 3), "ab12")
    for bad in ("", "12", "a-b", "-1-2", "1-2-x y", "1 -2", "9" * 50 + "-1"):
        try:
            parse_id(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_a_client_is_dropped_only_when_it_falls_behind() -> None:
    sub = Subscriber(None, "q", max_queued=10)
    burst = [((i, 0), ev("started", f"j{i}")) for i in range(50)]
    sub.offer(burst)  # one big batch (a catch-up) is delivered, not a reason to drop
    assert not sub.overflowed.is_set() and sub.waiting == 50
    sub.offer(burst[:1])  # more while 50 are still waiting: too far behind
    assert sub.overflowed.is_set()
    other = Subscriber("j1", None, max_queued=10)
    other.offer(burst)
    assert [e.job_id for _, e in other.inbox.get_nowait()] == ["j1"]
