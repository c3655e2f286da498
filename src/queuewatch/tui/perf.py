"""Refresh time and RSS of the console with many queues (canned snapshots, headless).

    python -m queuewatch.tui.perf [QUEUES] [REFRESHES] [HISTORY]
    python -m queuewatch.tui.perf group [DEAD_LETTERS]

Prints one JSON line: per refresh, the time from a new snapshot to the table updated
(``apply_snapshot``) and to every widget having processed its messages; the RSS, with the
per-queue history first filled with ``HISTORY`` polls (default 120, the default
``history_size``: the steady state of a console that ran 10 minutes); and, as a baseline
measured in the same run between the refreshes, the time to decode the management API's
JSON answer for the same queues (what any client reading them pays per poll).
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
from queuewatch.monitor.model import Snapshot
from queuewatch.tui.app import QueuewatchApp
from queuewatch.tui.canned import many_queues
from queuewatch.tui.source import SnapshotSource
from queuewatch.tui.widgets.queue_table import QueueTable


async def measure_refresh(queues: int = 5000, refreshes: int = 20, changed: float = 1.0,
                          history: int = 120) -> dict[str, Any]:
    """Feed ``refreshes`` snapshots of ``queues`` queues (``changed`` fraction moving) and time
    them; then the RSS; then decode the same queues' management JSON as often (the baseline;
    after the RSS, as the decoded lists would leave the allocator's high-water mark in it).
    The process holds what a console holds between polls: the snapshot shown, the table,
    the history (as a monitor's, filled with ``history`` polls). The first load of the
    ``queues`` rows is timed apart (``first_load_ms``)."""
    source = SnapshotSource([many_queues(1, 0)], vhost="bench")
    app = QueuewatchApp(Settings(), source, poll_interval=1e6)
    apply_ms: list[float] = []
    refresh_ms: list[float] = []
    async with app.run_test(size=(200, 50)) as pilot:
        while app.polls_done < 1:
            await pilot.pause(0.05)
        await pilot.pause()
        # The history a console holds after ``history`` polls (after the app's one poll: a
        # poll forgets the queues it did not see), from two snapshots taken in turn
        steps = [many_queues(queues, k, changed=changed) for k in (1, 2)]
        for k in range(history):
            source.record_history(steps[0].taken_at - 5 * (history - k), steps[k % 2].queues)
        del steps
        first = many_queues(queues, 0)
        table = app.query_one(QueueTable)
        t0 = time.perf_counter()
        app.apply_snapshot(first)
        await pilot.pause(0)
        first_load_ms = (time.perf_counter() - t0) * 1000
        # (the rest of the rows are added a chunk per turn: the longest the console is busy
        # at once, and when the table is full)
        longest_ms = first_load_ms
        while table.rows_to_add:
            t1 = time.perf_counter()
            await pilot.pause(0)
            longest_ms = max(longest_ms, (time.perf_counter() - t1) * 1000)
        filled_ms = (time.perf_counter() - t0) * 1000
        await pilot.pause()
        del first
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
            del snap
        rss = psutil.Process().memory_info().rss
    assert app.snapshot is not None
    body = json.dumps(raw_records(app.snapshot)).encode()
    decode_ms: list[float] = []
    for _ in range(refreshes):
        t0 = time.perf_counter()
        json.loads(body)
        decode_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "queues": queues, "refreshes": refreshes, "history_polls": history,
        "apply_ms_median": round(statistics.median(apply_ms), 1), "apply_ms_max": round(max(apply_ms), 1),
        "refresh_ms_median": round(statistics.median(refresh_ms), 1),
        "refresh_ms_max": round(max(refresh_ms), 1), "rss_mb": round(rss / 2**20, 1),
        "decode_ms_median": round(statistics.median(decode_ms), 1),
        "first_load_ms": round(first_load_ms, 1), "first_load_busy_ms": round(longest_ms, 1),
        "first_load_filled_ms": round(filled_ms, 1),
        "apply_ms": apply_ms, "refresh_ms": refresh_ms, "decode_ms": decode_ms, "rss": rss,
    }


def raw_records(snap: Snapshot) -> list[dict[str, Any]]:
    """``snap``'s queues as the management API lists them with the monitor's ``columns=``."""
    def rate(value: float) -> dict[str, float]:
        return {"rate": value}

    return [{
        "name": q.name, "vhost": q.vhost, "type": q.type, "state": q.state,
        "arguments": {"x-max-length": q.max_length, "x-overflow": "reject-publish",
                      "x-dead-letter-exchange": "", "x-dead-letter-routing-key": q.dlq},
        "effective_policy_definition": {}, "messages_ready": q.ready,
        "messages_unacknowledged": q.unacked, "message_bytes": 1024 * (q.ready or 0),
        "consumers": q.consumers, "consumer_utilisation": 1.0 if q.consumers else None,
        "head_message_timestamp": int(snap.taken_at - (q.oldest_age or 0)),
        "message_stats": {
            "publish_details": rate(q.publish_rate), "deliver_get_details": rate(q.deliver_rate),
            "ack_details": rate(q.ack_rate), "redeliver_details": rate(0.0),
            "deliver_no_ack_details": rate(0.0), "get_no_ack_details": rate(0.0), "ack": 123_456,
        },
        "node": "rabbit@bench",
    } for q in snap.queues]


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
    h = int(sys.argv[3]) if len(sys.argv) > 3 else 120
    print(json.dumps(asyncio.run(measure_refresh(n, r, history=h))))
