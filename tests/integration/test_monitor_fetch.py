"""The poll's queue sweep: one unpaged ``columns=`` request by default (linear on the
broker, see BENCHMARKS.md), the same queues and fields as a paged sweep."""

from __future__ import annotations

from queuewatch.monitor.fetch import fetch_queues
from queuewatch.monitor.queues import MONITOR_QUEUE_COLUMNS


async def test_unpaged_sweep_equals_the_paged_one(connection, mgmt, vhost):
    # Given 9 queues
    ch = await connection.channel()
    for i in range(9):
        await ch.declare_queue(f"u{i}", durable=True, arguments={"x-max-length": 10 + i})
    # When swept unpaged (the default, one request, pages reported once) and in pages of 4
    pages: list[int] = []
    unpaged = await fetch_queues(mgmt, vhost, MONITOR_QUEUE_COLUMNS,
                                 on_page=lambda n, items: pages.append(n))
    paged = await fetch_queues(mgmt, vhost, MONITOR_QUEUE_COLUMNS, page_size=4)
    # Then both hold every queue once, with the same fields (columns= honoured unpaged too)
    assert pages == [1]
    names = sorted(q["name"] for q in unpaged)
    assert names == sorted(q["name"] for q in paged) == [f"u{i}" for i in range(9)]
    by_name = {q["name"]: q for q in paged}
    for q in unpaged:
        assert set(q) == set(by_name[q["name"]])
        assert q["arguments"] == by_name[q["name"]]["arguments"]
    assert "garbage_collection" not in unpaged[0]  # only the columns asked for
