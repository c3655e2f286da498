"""The Workers view says the same word for a worker as the CLI (no broker)."""

from __future__ import annotations

from dataclasses import replace

from queuewatch.monitor.model import WorkerStats
from queuewatch.telemetry import ConsumerStatus
from queuewatch.tui.widgets.views import worker_state

W = WorkerStats(worker_id="w1", host="h", pid=1, queues=("jobs",), concurrency=4,
                cpu_percent=0.0, rss_bytes=0, in_flight=(), jobs_per_second=20.0, errors=0,
                last_heartbeat=0.0, heartbeat_age=0.5)


def test_every_worker_state_has_its_cell():
    cells = {
        "ok": W,
        "NOT CONSUMING": replace(W, consumers=(ConsumerStatus("jobs", False, 0.0,
                                                              "cancelled_by_broker"),)),
        "unknown": replace(W, heartbeat_state="unknown", heartbeat_age=30.0),
        "stale": replace(W, heartbeat_state="stale", heartbeat_age=30.0),
        "gone": replace(W, heartbeat_state="stale", connection_open=False),
        "HUNG": replace(W, heartbeat_state="stale", connection_open=True, hung=True),
    }
    assert {text: worker_state(w).plain for text, w in cells.items()} == {t: t for t in cells}
    # an unknown worker is never shown HUNG, whatever its age
    assert worker_state(replace(W, heartbeat_state="unknown", heartbeat_age=900)).plain == "unknown"
