"""The one sweep a poll needs: every queue of a vhost, in one unpaged request by default.

Measured (``python -m bench --only monitor``, BENCHMARKS.md "Monitor snapshot growth"): the
management API sorts the whole queue list for every page it serves, so a paged sweep costs
pages x N log N on the broker (quadratic: 11.7 s at 20,000 queues in pages of 500, against
3.8 s unpaged), while one unpaged ``columns=`` request grows linearly. Paging is kept as an
option (``page_size``) for brokers where one response of every queue is too large to hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from queuewatch.broker.management import MAX_PAGE_SIZE, ManagementClient
from queuewatch.errors import NotFound

#: Pages requested at the same time after the first (which tells how many there are).
PAGE_CONCURRENCY = 8


PageCallback = Callable[[int, list[dict[str, Any]]], None]


async def fetch_queues(
    mgmt: ManagementClient,
    vhost: str | None,
    columns: Sequence[str],
    *,
    page_size: int | None = None,
    concurrency: int = PAGE_CONCURRENCY,
    on_page: PageCallback | None = None,
) -> list[dict[str, Any]]:
    """All queues (``columns`` only) of ``vhost`` (None: every vhost), de-duplicated, in order.

    ``page_size`` None (the default): one unpaged request; a number: pages of that size
    (at most 500), a few in flight at once. ``on_page(page_number, items)`` is called as each
    page arrives (once, as page 1, when unpaged), so the caller can work on it while the
    broker still prepares the next ones. Queues created or deleted during a paged sweep may
    shift page boundaries; a queue seen twice is kept once.
    """
    try:
        if page_size is None:
            items = _unique(await mgmt.queues_unpaged(vhost, columns), set())
            if on_page is not None:
                on_page(1, items)
            return items
        return await _paged(mgmt, vhost, columns, page_size, concurrency, on_page)
    except NotFound:
        raise NotFound(
            f"vhost {vhost!r} does not exist on {mgmt.display_url} (see 'rabbitmqctl list_vhosts')"
        ) from None


def _unique(items: list[dict[str, Any]], seen: set[tuple[str, str]]) -> list[dict[str, Any]]:
    fresh = []
    for item in items:
        key = (item.get("vhost", ""), item.get("name", ""))
        if key not in seen:
            seen.add(key)
            fresh.append(item)
    return fresh


async def _paged(
    mgmt: ManagementClient, vhost: str | None, columns: Sequence[str], page_size: int,
    concurrency: int, on_page: PageCallback | None,
) -> list[dict[str, Any]]:
    size = max(1, min(page_size, MAX_PAGE_SIZE))
    seen: set[tuple[str, str]] = set()
    pages: dict[int, list[dict[str, Any]]] = {}

    async def page(n: int) -> int:
        data = await mgmt.queues_page(vhost, n, size, columns)
        pages[n] = fresh = _unique(data["items"], seen)
        if on_page is not None:
            on_page(n, fresh)
        return int(data.get("page_count", 1))

    count = await page(1)
    if count > 1:
        gate = asyncio.Semaphore(max(concurrency, 1))

        async def gated(n: int) -> None:
            async with gate:
                await page(n)

        await asyncio.gather(*(gated(n) for n in range(2, count + 1)))
    return [item for n in sorted(pages) for item in pages[n]]
