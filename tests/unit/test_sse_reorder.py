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
    assert parse_id(f"{2**63 - 1}-{2**63 - 1}") == ((2**63 - 1, 2**63 - 1), None)
    for bad in ("", "12", "a-b", "-1-2", "1-2-x y", "1 -2", "9" * 50 + "-1",
                f"{2**63}-0", f"0-{2**63}-ab12", "9" * 20 + "-0", "\u0661-2"):
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


def _send(order: Reorder, items: list[tuple[tuple[int, int], Event]]) -> list[str]:
    """What the SSE pump sends for ``items`` (as :meth:`EventHub._send` does): kinds."""
    if items and order.in_order(items):
        return [e.kind for _, e in items]
    order.feed(items)
    return [e.kind for _, e, _ in order.release()]


def test_a_replayed_job_is_sent_replayed_then_its_new_run() -> None:
    # Given a client that saw a job retried, then dead-lettered
    order = Reorder(lambda job, pos: False, hold=0.5)
    sent = _send(order, [((1, 0), ev("accepted", "j")), ((2, 0), ev("started", "j")),
                         ((2, 1), ev("attempt_failed", "j")), ((2, 2), ev("dead_lettered", "j"))])
    # When the replayed copy runs and succeeds before the replay's "replayed" reaches the stream
    sent += _send(order, [((3, 0), ev("started", "j")), ((3, 1), ev("succeeded", "j"))])
    assert 0 < (order.due_in() or 0) <= 0.5  # held for its replayed
    sent += _send(order, [((4, 0), ev("replayed", "j"))])
    # Then the client gets the job's life in its real order: it ends succeeded, not "replayed"
    assert sent == ["accepted", "started", "attempt_failed", "dead_lettered", "replayed",
                    "started", "succeeded"]
    # And its next death and replay, in order in one batch, go straight through
    assert _send(order, [((5, 0), ev("dead_lettered", "j")), ((6, 0), ev("replayed", "j")),
                         ((6, 1), ev("started", "j"))]) == ["dead_lettered", "replayed", "started"]
    assert order.due_in() is None


def test_a_job_that_ended_and_is_never_replayed_is_not_held_again() -> None:
    # Given a dead-lettered job whose next run comes without any replayed (a foreign replay)
    order = Reorder(lambda job, pos: True, hold=0.05)
    _send(order, [((1, 0), ev("accepted", "j")), ((1, 1), ev("dead_lettered", "j"))])
    assert _send(order, [((2, 0), ev("started", "j"))]) == []
    time.sleep(0.06)
    # Then it goes out after the hold, and the job's later events are not held again
    assert _send(order, []) == ["started"]
    assert _send(order, [((3, 0), ev("succeeded", "j"))]) == ["succeeded"]
    # And events after an end that are no new run (a second end) are not held at all
    assert _send(order, [((4, 0), ev("cancelled", "k")), ((4, 1), ev("dead_lettered", "k"))]) == [
        "cancelled", "dead_lettered"]
