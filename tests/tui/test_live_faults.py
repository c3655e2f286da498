"""The console through link faults (issue 11, item 3): it tells the truth after a TCP cut and
during a silent link, with a real worker busy on a direct connection.

The console reaches RabbitMQ through two loopback proxies (AMQP and management API); the
worker does not, so it keeps working while the console is cut off. Before this was fixed
the console kept the worker HUNG with an ever-growing heartbeat age after the cut, listed
its last in-flight jobs as stuck, and showed frozen data as current.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from queuewatch.config import Thresholds
from queuewatch.monitor.model import Snapshot
from queuewatch.topology import QueueSpec
from queuewatch.tui.app import QueuewatchApp
from queuewatch.tui.live import LiveSource
from queuewatch.tui.widgets.status import ErrorLine, StatusBar
from queuewatch.tui.widgets.views import StuckView, WorkersView
from tests.fault_helpers import Stopwatch, busy_worker, proxied
from tests.helpers import declare
from tests.tui.live_helpers import live_app, wait_for

pytestmark = pytest.mark.timeout(150)

SIZE = (160, 40)
CUT_SECONDS = 8.0
#: Restore -> truthful console, at most (seconds). Measured ~1-2 s: the session retries AMQP
#: as soon as the management API answers again, then a heartbeat and a poll (0.5 s here).
BOUND = 10.0
#: A short staleness threshold, so the old console would have called the worker HUNG within
#: the test (default 10 s); stuck after 3 s, so its old in-flight jobs would count as stuck.
QUICK = Thresholds(heartbeat_stale_seconds=4.0, stuck_job_seconds=3.0)


def truthful(app: QueuewatchApp, worker_id: str) -> bool:
    """The worker is there, fresh (< 3 s), not hung; no stuck job; nothing marked stale."""
    snap = app.snapshot
    if snap is None or app.error is not None or not snap.workers_known:
        return False
    w = next((w for w in snap.workers if w.worker_id == worker_id), None)
    return (w is not None and w.heartbeat_state == "fresh" and w.heartbeat_age < 3.0
            and not w.hung and not snap.stuck_jobs
            and not app.query_one("#views").has_class("stale")
            and not app.query_one(WorkersView).has_class("stale"))


def never_hung(snap: Snapshot | None) -> None:
    if snap is not None:
        assert not [w.worker_id for w in snap.workers if w.hung], "a working worker shown HUNG"
        assert not snap.stuck_jobs, f"phantom stuck jobs: {snap.stuck_jobs}"
        assert not [a for a in snap.alerts if a.kind in ("hung_worker", "stuck_job")]


async def test_tcp_cut_of_8s_console_comes_back_truthful(settings, connection, mgmt, vhost):
    # Given a real worker busy on "work" (20 jobs/s of 0.2 s, direct connection), and the
    # console looking at it through proxies
    topo = await declare(connection, vhost, QueueSpec("work"), mgmt=mgmt, delay_levels=2)
    quick = replace(settings, thresholds=QUICK)
    with proxied(quick) as net:
        app = live_app(net.settings, LiveSource(net.settings, topology=topo))
        async with busy_worker(quick, topo, "work", "w-busy") as busy, \
                app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            await wait_for(pilot, lambda: truthful(app, "w-busy"), timeout=30, what="worker ok")
            # When the link between the console and the broker is cut for 8 s
            net.cut()
            cut = Stopwatch()
            while cut.elapsed < CUT_SECONDS:
                await pilot.pause(0.25)
                never_hung(app.snapshot)
            # Then, while cut, the views are marked stale with the age of what they show
            assert app.error is not None
            assert app.query_one("#views").has_class("stale")
            line = str(app.query_one(ErrorLine).render())
            assert "stale" in line and "reconnecting" in line, line
            assert "stale" in str(app.query_one(StatusBar).render_text())
            # When the link is restored
            done_before = busy.done
            net.restore()
            back = Stopwatch()
            # Then within a bounded time the worker is fresh again, not hung, no stuck job
            while not truthful(app, "w-busy"):
                never_hung(app.snapshot)
                assert back.elapsed < BOUND, (
                    f"not truthful {BOUND}s after restore: error={app.error}, "
                    f"workers={app.snapshot.workers if app.snapshot else None}")
                await pilot.pause(0.1)
            took = back.elapsed
            print(f"\nconsole: truthful {took:.1f}s after an {CUT_SECONDS:g}s cut was restored")
            # And it stays so (the worker kept working all along)
            settle = Stopwatch()
            while settle.elapsed < 3:
                await pilot.pause(0.25)
                never_hung(app.snapshot)
            assert truthful(app, "w-busy")
            assert busy.done > done_before
            assert "heartbeats" not in str(app.query_one(StatusBar).render_text())
            workers = app.query_one(WorkersView)
            assert "HUNG" not in str(workers.query_one("#workers-help").render())
            assert "0 stuck jobs" in str(app.query_one(StuckView).query_one("#stuck-help").render())


async def test_silent_amqp_link_makes_workers_unknown_not_hung(settings, connection, mgmt, vhost):
    # Given the same, with a short AMQP heartbeat (2 s: a silent link is noticed after
    # (2+1)*3 = 9 s; with the default 10 s that is 33 s), and a management API that keeps
    # answering
    topo = await declare(connection, vhost, QueueSpec("work"), mgmt=mgmt, delay_levels=2)
    quick = replace(settings, thresholds=QUICK)
    with proxied(quick, heartbeat=2) as net:
        app = live_app(net.settings, LiveSource(net.settings, topology=topo))
        async with busy_worker(quick, topo, "work", "w-busy"), \
                app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: truthful(app, "w-busy"), timeout=30, what="worker ok")
            # When the AMQP link goes silent (nothing passes, nothing closes) for 8 s
            net.amqp.blackhole()
            silent = Stopwatch()
            # Then within a few seconds worker states are unknown, and the worker views say so
            await wait_for(pilot, lambda: app.snapshot is not None
                           and not app.snapshot.workers_known, timeout=8, what="feed down")
            noticed = silent.elapsed
            await pilot.press("2")
            await wait_for(pilot, lambda: app.query_one(WorkersView).has_class("stale"),
                           timeout=3, what="workers view marked stale")
            assert "heartbeats stale" in str(app.query_one(WorkersView).query_one(
                "#workers-help").render())
            # And nobody is called HUNG although the worker is silent longer than 4 s
            while silent.elapsed < CUT_SECONDS:
                await pilot.pause(0.25)
                never_hung(app.snapshot)
                assert app.error is None  # the management API still answers
            w = next(w for w in app.snapshot.workers if w.worker_id == "w-busy")
            assert w.heartbeat_state == "unknown" and w.heartbeat_age > QUICK.heartbeat_stale_seconds
            # When the link carries traffic again, Then the truth is back within the bound
            net.amqp.restore()
            back = Stopwatch()
            while not truthful(app, "w-busy"):
                never_hung(app.snapshot)
                assert back.elapsed < BOUND + 10, "not truthful after the silent link ended"
                await pilot.pause(0.1)
            print(f"\nconsole: feed down {noticed:.1f}s into a silent link; truthful "
                  f"{back.elapsed:.1f}s after it ended")
            await asyncio.sleep(0)
