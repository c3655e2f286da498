"""Charts with a time axis, and the history they draw kept across console restarts.

Unit tests (no broker) for the chart and the history file; one test on the real broker runs
the console twice and finds the first run's points, with the time between runs as a gap."""

from __future__ import annotations

import asyncio
import gzip
import json
import time

import aio_pika

from queuewatch.monitor.history import HistoryPoint
from queuewatch.monitor.history_file import decode, encode, history_path, load, save
from queuewatch.topology import QueueSpec
from queuewatch.tui.chart import GAP, chart, columns, span_text
from queuewatch.tui.live import LiveSource
from queuewatch.tui.screens.queue_detail import QueueDetailScreen
from queuewatch.tui.widgets.time_chart import TimeChart
from tests.helpers import declare
from tests.tui.live_helpers import live_app, wait_for


def test_a_closed_console_is_a_gap_not_a_line():
    # Given points every 5 s for 2 minutes, then nothing for 5 minutes, then 3 minutes more
    now = 10_000.0
    first = [(now - 600 + 5 * i, 10.0) for i in range(24)]
    second = [(now - 180 + 5 * i, 20.0) for i in range(37)]
    values = columns(first + second, now, 600, 60, max_gap=12.5)
    # Then the 5 minutes without points are empty columns (not the last value held or a ramp)
    assert values[:12] == [10.0] * 12
    assert all(v is None for v in values[14:41])
    assert values[43:] == [20.0] * 17
    # And the drawn chart shows the gap as dots, with a time axis from -10m to now
    text, window = chart(first + second, now, 60)
    rows = text.plain.splitlines()
    assert window == 600 and GAP * 20 in rows[-2]
    assert rows[-1].startswith("-10m") and "-5m" in rows[-1] and rows[-1].endswith("now")


def test_window_and_labels_follow_the_kept_history():
    now = 50_000.0
    assert chart([(now - 40, 1.0), (now, 2.0)], now, 30)[1] == 60
    assert chart([(now - 5400, 1.0), (now, 2.0)], now, 30)[1] == 7200
    assert [span_text(s) for s in (45, 600, 5400, 7200, 86400)] == ["45s", "10m", "1h30m", "2h",
                                                                    "1d"]


def test_history_file_is_bounded_and_names_no_password(tmp_path):
    now = 1_000_000.0
    history = {("v", f"q{i}"): tuple(HistoryPoint(now - 5 * (120 - k), i, 1, 1, 0.5, 2.5,
                                                  None if k % 2 else 3.0) for k in range(120))
               for i in range(300)}
    path = history_path(tmp_path, "http://admin:s3cret@rabbit.example:15672", "orders/eu")
    assert "s3cret" not in str(path) and "admin" not in str(path)
    assert path.parent == tmp_path / "history" and path.name.startswith("rabbit.example-15672")
    size = save(path, history, now, max_queues=50)
    data = json.loads(gzip.decompress(path.read_bytes()))
    # Then only the 50 busiest queues are kept (deepest first), and it reads back the same
    assert len(data["queues"]) == 50 and data["queues"][0]["name"] == "q299"
    assert size < 50 * 120 * 10  # under 10 bytes a point
    back = load(path, now)
    assert back[("v", "q299")] == list(history[("v", "q299")])
    # And points older than a day, or an unreadable file, are dropped, never an error
    assert decode(encode(history, now + 90_000), now + 90_000) == {}
    path.write_text("{not json")
    assert load(path, now) == {}


async def test_chart_history_survives_a_restart_with_a_gap(connection, settings, vhost):
    # Given a queue with messages, and the console run once for a few polls
    await declare(connection, vhost, QueueSpec("orders"))
    channel = await connection.channel()
    for _ in range(5):
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key="orders")
    first_source = LiveSource(settings, heartbeats=False)
    app = live_app(settings, first_source)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: len(first_source.history("orders")) >= 4, what="4 polls")
        first_run = list(first_source.history("orders"))
    path = history_path(settings.state_dir, settings.management_url, vhost)
    # Then closing it wrote the history file (in a thread), small
    assert path.exists() and path.stat().st_size < 10_000
    await asyncio.sleep(4)  # the console is closed: no polls

    # When it is started again
    started = time.time()
    source = LiveSource(settings, heartbeats=False)
    app = live_app(settings, source)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: any(p.taken_at >= started for p in source.history("orders")),
                       what="a poll of the second run")
        await wait_for(pilot, lambda: len([p for p in source.history("orders")
                                           if p.taken_at >= started]) >= 3, what="3 new polls")
        points = source.history("orders")
        # Then the first run's points come first, then this run's
        kept = points[:len(first_run)]
        assert all(abs(a.taken_at - b.taken_at) < 0.1 for a, b in zip(kept, first_run, strict=True))
        assert [p.total for p in kept] == [p.total for p in first_run]
        # And the queue detail draws them on a time axis, the closed time as a gap
        await pilot.press("slash", *"orders", "enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, QueueDetailScreen), what="detail")
        await pilot.pause(0.5)
        chart_text = str(app.screen.query_one("#chart-depth", TimeChart).render())
        assert GAP in chart_text.splitlines()[-2]
        assert chart_text.splitlines()[-1].rstrip().endswith("now")
        title = str(app.screen.query_one("#depth-title").render())
        assert "last 1m" in title and "polls" not in title
