"""Refresh time and RSS of the console with many queues (canned snapshots, headless).

    python -m queuewatch.tui.perf [QUEUES] [REFRESHES]

Prints one JSON line: per refresh, the time from a new snapshot to the table updated
(``apply_snapshot``) and to every widget having processed its messages; and the RSS.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import psutil

from queuewatch.config import Settings
from queuewatch.tui.app import QueuewatchApp
from queuewatch.tui.canned import many_queues
from queuewatch.tui.source import SnapshotSource


async def measure_refresh(queues: int = 5000, refreshes: int = 20, changed: float = 1.0) -> dict[str, Any]:
    """Feed ``refreshes`` snapshots of ``queues`` queues (``changed`` fraction moving) and time them."""
    first = many_queues(queues, 0)
    app = QueuewatchApp(Settings(), SnapshotSource([first], vhost="bench"), poll_interval=1e6)
    apply_ms: list[float] = []
    refresh_ms: list[float] = []
    async with app.run_test(size=(200, 50)) as pilot:
        while app.polls_done < 1:
            await pilot.pause(0.05)
        await pilot.pause()
        for k in range(1, refreshes + 1):
            snap = many_queues(queues, k, changed=changed)  # built before the clock starts
            t0 = time.perf_counter()
            app.apply_snapshot(snap)
            t1 = time.perf_counter()
            await pilot.pause(0)
            t2 = time.perf_counter()
            await pilot.pause()
            apply_ms.append((t1 - t0) * 1000)
            refresh_ms.append((t2 - t0) * 1000)
        rss = psutil.Process().memory_info().rss
    return {
        "queues": queues, "refreshes": refreshes,
        "apply_ms_median": round(statistics.median(apply_ms), 1), "apply_ms_max": round(max(apply_ms), 1),
        "refresh_ms_median": round(statistics.median(refresh_ms), 1),
        "refresh_ms_max": round(max(refresh_ms), 1), "rss_mb": round(rss / 2**20, 1),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    r = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    print(json.dumps(asyncio.run(measure_refresh(n, r))))
