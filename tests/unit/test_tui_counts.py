"""What the console says after a replay, delete or move, when the count it confirmed and
the count it did differ (seen on the demo: "replayed 13 of 12 dead letters")."""

from queuewatch.dlq import ReplayResult
from queuewatch.tui.widgets.dlq_actions import done_of
from queuewatch.tui.widgets.queue_actions import moved_text


def test_done_as_counted_or_fewer_reads_n_of_m() -> None:
    assert done_of("replayed", 12, 12) == "replayed 12 of 12 dead letters"
    assert done_of("deleted", 3, 12) == "deleted 3 of 12 dead letters"
    assert done_of("replayed", 1, 1) == "replayed 1 of 1 dead letter"


def test_more_done_than_counted_says_that_some_came_since() -> None:
    text = done_of("replayed", 13, 12)
    assert text == "replayed 13 dead letters (12 counted when confirmed, 1 came since)"
    assert "13 of 12" not in text


def test_a_move_of_more_than_counted() -> None:
    result = ReplayResult("src", False, 26, 26, 26)
    text = moved_text(result, "src", "dst", 25)
    assert text.startswith("moved 26 messages (25 counted when confirmed, 1 came since) "
                           "from src to dst")


def test_the_summary_band_drops_whole_items_that_do_not_fit() -> None:
    from queuewatch.tui.widgets.queues_view import fit
    items = [("queues", "6", ""), ("ready", "48", ""), ("workers", "1 busy/0 idle", ""),
             ("alerts", "6 (0 crit)", "")]
    assert fit(items, None).plain.strip() == \
        "queues 6  ready 48  workers 1 busy/0 idle  alerts 6 (0 crit)"
    # Given a width that ends inside "workers 1 busy/0 idle": that item and the rest go
    for width in range(20, 41):
        plain = fit(items, width).plain.rstrip()
        assert len(plain) <= width
        assert plain in (" queues 6  ready 48", " queues 6  ready 48  workers 1 busy/0 idle")


def test_one_worker_is_not_one_workers() -> None:
    from queuewatch.monitor.model import plural
    assert [plural(n, "worker") for n in (0, 1, 2)] == ["0 workers", "1 worker", "2 workers"]
