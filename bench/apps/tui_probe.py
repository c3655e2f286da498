"""TUI update time and RSS (``python -m bench.apps.tui_probe``), in a process of its own so
its RSS is the console's alone.

Polls the benchmark vhost once with the real :class:`~queuewatch.monitor.Monitor`
(``BENCH_AMQP_URL``/``BENCH_VHOST``, thousands of queues), then runs the app headless
(``App.run_test``) on that snapshot and feeds ``BENCH_REFRESHES`` new snapshots in which
every queue's numbers changed. For each: the time of ``apply_snapshot`` (the table cells
updated in place) and of apply + every widget processing its pending messages (the
refresh). Prints one JSON line. ``BENCH_PROFILE=<path>``: pyinstrument text profile of
the refreshes.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from dataclasses import replace
from pathlib import Path

import psutil

from queuewatch.broker.management import ManagementClient
from queuewatch.config import load_settings
from queuewatch.monitor import Monitor, Snapshot


def varied(snap: Snapshot, k: int) -> Snapshot:
    queues = tuple(replace(q, ready=q.ready + k, unacked=(q.unacked + k) % 7,
                           publish_rate=float(k), deliver_rate=float(k % 3))
                   for q in snap.queues)
    return replace(snap, queues=queues, taken_at=snap.taken_at + 5 * k)


async def main() -> None:
    settings = load_settings(env={}, amqp_url=os.environ["BENCH_AMQP_URL"],
                             vhost=os.environ["BENCH_VHOST"])
    refreshes = int(os.environ.get("BENCH_REFRESHES", "20"))
    async with ManagementClient(settings) as mgmt:
        first = await Monitor(mgmt, settings).poll()

    from queuewatch.tui.app import QueuewatchApp
    from queuewatch.tui.source import SnapshotSource

    source = SnapshotSource([first], vhost=settings.effective_vhost)
    app = QueuewatchApp(settings, source, poll_interval=1e6)
    apply_ms: list[float] = []
    rendered_ms: list[float] = []
    async with app.run_test(size=(200, 50)) as pilot:
        deadline = time.monotonic() + 60
        while app.polls_done < 1 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause()
        budget = time.monotonic() + float(os.environ.get("BENCH_TUI_BUDGET", "150"))
        profiler = None
        if os.environ.get("BENCH_PROFILE"):
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001, async_mode="disabled")
            profiler.start()
        for k in range(1, refreshes + 1):
            if time.monotonic() > budget:  # too slow: report the refreshes done so far
                break
            snap = varied(first, k)
            t0 = time.perf_counter()
            app.apply_snapshot(snap)
            t1 = time.perf_counter()
            await pilot.pause(0)  # every widget processed its pending messages (the refresh)
            t2 = time.perf_counter()
            await pilot.pause()  # settle (not timed) before the next snapshot
            apply_ms.append((t1 - t0) * 1000)
            rendered_ms.append((t2 - t0) * 1000)
        if profiler is not None:
            profiler.stop()
            Path(os.environ["BENCH_PROFILE"]).write_text(
                profiler.output_text(unicode=False, color=False))
        rss = psutil.Process().memory_info().rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"queues": len(first.queues), "apply_ms": apply_ms,
                      "rendered_ms": rendered_ms, "rss": rss, "peak_rss": peak}))


if __name__ == "__main__":
    asyncio.run(main())
