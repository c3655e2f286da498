"""The ``:`` command bar (k9s habit) on canned snapshots: navigation by name or prefix,
arguments with completion, unknown and ambiguous commands in one line, Esc."""

from __future__ import annotations

import pytest
from textual.widgets import Input, TabbedContent

from queuewatch.tui.command_bar import (
    COMMANDS,
    Command,
    CommandError,
    action_of,
    offered,
    resolve,
)
from queuewatch.tui.screens.command_bar import CommandBar
from queuewatch.tui.screens.job import JobScreen
from queuewatch.tui.screens.queue_detail import QueueDetailScreen
from queuewatch.tui.widgets.dlq_view import DlqView
from tests.tui.canned_app import canned_app

SIZE = (120, 30)


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Let the app handle what the keys started (the bar runs in a worker that waits for it
    to close, so waiting for every worker would wait forever)."""
    for _ in range(3):
        await pilot.pause(0.05)


async def command(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press("colon")
    await settle(pilot)
    assert isinstance(pilot.app.screen, CommandBar)
    await pilot.press(*text, "enter")
    await settle(pilot)


def toasts(app) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(n.message) for n in app._notifications]


def test_commands_resolve_by_name_prefix_and_argument():
    commands = offered(["queues", "workers", "stuck", "dlq", "alerts"])
    # Views the main screen does not have are not offered
    assert "busy" not in [c.name for c in commands]
    assert resolve("wo", commands)[0].name == "workers"
    assert resolve(":queues", commands)[0].name == "queues"  # exact beats the prefix of queue
    command, arg = resolve("queue emails", commands)
    assert action_of(command, arg) == "drill('queue', 'emails')"
    assert action_of(*resolve("dlq", commands)) == "view('dlq')"
    assert action_of(*resolve("dlq it's.dlq", commands)) == 'drill(\'dlq\', "it\'s.dlq")'
    for text, fragment in (("nope", "unknown command :nope"), ("qu", "ambiguous"),
                           ("queue", "needs NAME"), ("alerts x", "takes no argument")):
        with pytest.raises(CommandError, match=fragment):
            resolve(text, commands)
    # The list is one place a new view extends
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names)) and isinstance(COMMANDS[0], Command)


async def test_colon_navigates_like_the_keys():
    app = canned_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # When :workers is typed, Then the Workers view shows
        await command(pilot, "workers")
        assert app.query_one(TabbedContent).active == "workers"
        # And a unique prefix is enough
        await command(pilot, "al")
        assert app.query_one(TabbedContent).active == "alerts"
        # And :dlq NAME opens that DLQ in the browser
        await command(pilot, "dlq thumbnails.dlq")
        assert app.query_one(TabbedContent).active == "dlq"
        assert app.query_one(DlqView).dlq == "thumbnails.dlq"
        # And :queue NAME opens its detail; from there :queues goes back to the table
        await command(pilot, "queue emails")
        assert isinstance(app.screen, QueueDetailScreen) and app.screen.queue_name == "emails"
        await command(pilot, "queues")
        assert app.screen is app.main and app.query_one(TabbedContent).active == "queues"
        # And :job ID opens the job's timeline
        await command(pilot, "job abc123")
        assert isinstance(app.screen, JobScreen)


async def test_unknown_command_says_so_in_one_line_and_esc_closes():
    app = canned_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await command(pilot, "nope")
        assert app.screen is app.main
        note = toasts(app)[-1]
        assert note.startswith("unknown command :nope") and "\n" not in note
        await command(pilot, "qu")
        assert "ambiguous" in toasts(app)[-1]
        # When : is pressed, something typed and Esc pressed, Then nothing happens
        await pilot.press("colon")
        await settle(pilot)
        await pilot.press(*"workers", "escape")
        await settle(pilot)
        assert app.screen is app.main and app.query_one(TabbedContent).active == "queues"


async def test_tab_completes_commands_and_queue_names():
    app = canned_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await settle(pilot)
        box = app.screen.query_one(Input)
        await pilot.press(*"wor")
        await settle(pilot)
        assert "workers" in str(app.screen.query_one("#command-hints").render())
        await pilot.press("tab")
        assert box.value == "workers"
        box.value = ""
        await pilot.press(*"queue ema")
        await settle(pilot)
        await pilot.press("tab")
        assert box.value == "queue emails"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, QueueDetailScreen)


async def test_vhost_command_switches_the_vhost():
    app = canned_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # When :vhost NAME is run, Then the console polls that vhost and says so in the header
        await command(pilot, "vhost other")
        assert app.source.vhost == "other"
        assert "other" in str(app.main.query_one("#status").render())


async def test_vhost_command_with_a_name_the_broker_lacks_says_so_and_stays():
    app = canned_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        # When :vhost is given a name no vhost has (a typo)
        await command(pilot, "vhost ohter")
        # Then the console stays on its vhost and says which vhosts there are
        assert app.source.vhost == "demo"
        said = [n.message for n in app._notifications]
        assert any("no vhost named 'ohter'" in m and "demo, other" in m for m in said), said


async def test_a_notification_shows_a_bracketed_name_as_typed():
    app = canned_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        # When :vhost is given a name that looks like markup
        await command(pilot, "vhost a[/]b[bold]")
        await settle(pilot)
        # Then the notice shows it as typed (not read as markup, which would fail to render)
        assert app.source.vhost == "demo"
        await pilot.pause(0.3)
        toasts = [str(t.render()) for t in app.screen.query("Toast")]
        assert any("a[/]b[bold]" in t for t in toasts), toasts
