"""Names are data, not markup: a queue, job or worker whose name holds ``[`` / ``]`` (legal in
RabbitMQ names) shows as it is in every view, the detail screen and the notices, and never
makes the console fail to render (Textual reads a plain ``str`` as markup: ``[/]`` in a name
used to raise MarkupError and end the console)."""

from __future__ import annotations

import dataclasses
from typing import Any

from queuewatch.config import Settings
from queuewatch.tui import make_app
from queuewatch.tui.canned import T0, demo_busy_snapshot, demo_dead_letters, demo_scheduled
from queuewatch.tui.screens.main import VIEWS
from queuewatch.tui.source import SnapshotSource

BAD = "thumb[/]nails[bold]"


def rename(obj: Any) -> Any:
    """``obj`` with every "thumbnails" in its strings replaced by :data:`BAD`."""
    if isinstance(obj, str):
        return obj.replace("thumbnails", BAD)
    if isinstance(obj, tuple):
        return tuple(rename(x) for x in obj)
    if isinstance(obj, list):
        return [rename(x) for x in obj]
    if isinstance(obj, dict):
        return {rename(k): rename(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: rename(getattr(obj, f.name))
                   for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    return obj


async def test_a_name_with_brackets_shows_as_it_is_everywhere():
    source = SnapshotSource([rename(demo_busy_snapshot(0))], vhost="demo",
                            dead_letters={f"{BAD}.dlq": rename(demo_dead_letters(4))})
    source.scheduled = rename(demo_scheduled(T0 + 5))
    app = make_app(Settings(), source, clock=lambda: T0 + 5, poll_interval=3600)
    async with app.run_test(size=(200, 50), notifications=True) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        # When every view is shown (an exception while rendering one ends the test)
        seen = []
        for i, (view_id, _title) in enumerate(VIEWS, 1):
            await pilot.press(str(i))
            await app.workers.wait_for_complete()
            await pilot.pause()
            if BAD in _screen_text(app):
                seen.append(view_id)
        # Then the name shows as typed, on the queues view at least
        assert "queues" in seen, seen
        # And the DLQ picker lists its DLQ as it is, and the DLQ browser reads it
        await pilot.press(str([v for v, _ in VIEWS].index("dlq") + 1), "p")
        await pilot.pause(0.3)
        assert f"{BAD}.dlq" in _screen_text(app)
        await pilot.press(*"thumb", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        assert f"{BAD}.dlq" in _screen_text(app)
        # And the detail screen of that queue shows it too
        app.open_queue(BAD)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert BAD in _screen_text(app)


def _screen_text(app: Any) -> str:
    """What the screen shows, as text (the SVG screenshot holds the characters, escaped)."""
    import html

    return html.unescape(app.export_screenshot()).replace("\u00a0", " ")
