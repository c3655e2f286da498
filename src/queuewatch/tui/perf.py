"""Refresh time and RSS of the console with many queues (canned snapshots, headless).

    python -m queuewatch.tui.perf [QUEUES] [REFRESHES]
    python -m queuewatch.tui.perf group [DEAD_LETTERS]

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


def measure_grouping(n: int = 100_000) -> dict[str, Any]:
    """Group ``n`` dead letters by cause, against decoding them (the CPU part of a peek: what
    the DLQ core does for each message it reads; the broker round-trips come on top)."""
    from queuewatch.dlq.model import make_dead_letter
    from queuewatch.tui.canned import demo_dead_letters
    from queuewatch.tui.grouping import group_by_cause

    proto = demo_dead_letters(2)
    t0 = time.perf_counter()
    letters = []
    for i in range(n):
        p = proto[i % 2]
        headers = dict(p.headers)
        if i % 3 == 0:
            headers["x-qw-error-message"] = f"mailbox customer{i % 977}@example.com does not exist"
        letters.append(make_dead_letter(
            position=i, body=p.body, headers=headers, routing_key="t.dlq",
            properties={"message_id": f"job-{i}", "content_type": "application/json"}))
    t1 = time.perf_counter()
    causes = group_by_cause(letters)
    t2 = time.perf_counter()
    return {"dead_letters": n, "decode_s": round(t1 - t0, 2), "group_s": round(t2 - t1, 2),
            "group_vs_decode": round((t2 - t1) / (t1 - t0), 3), "causes": len(causes)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["group"]:
        print(json.dumps(measure_grouping(int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)))
        raise SystemExit(0)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    r = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    print(json.dumps(asyncio.run(measure_refresh(n, r))))
