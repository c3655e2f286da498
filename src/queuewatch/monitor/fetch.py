"""The one sweep a poll needs: every queue of a vhost, paged, a few pages in flight at once."""

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
    page_size: int = MAX_PAGE_SIZE,
    concurrency: int = PAGE_CONCURRENCY,
    on_page: PageCallback | None = None,
) -> list[dict[str, Any]]:
    """All queues (``columns`` only) of ``vhost`` (None: every vhost), de-duplicated, in order.

    ``on_page(page_number, items)`` is called as each page arrives, so the caller can work on
    it while the broker still prepares the next ones. Queues created or deleted during the
    sweep may shift page boundaries; a queue seen twice is kept once.
    """
    size = max(1, min(page_size, MAX_PAGE_SIZE))
    seen: set[tuple[str, str]] = set()
    pages: dict[int, list[dict[str, Any]]] = {}

    async def page(n: int) -> int:
        data = await mgmt.queues_page(vhost, n, size, columns)
        fresh = []
        for item in data["items"]:
            key = (item.get("vhost", ""), item.get("name", ""))
            if key not in seen:
                seen.add(key)
                fresh.append(item)
        pages[n] = fresh
        if on_page is not None:
            on_page(n, fresh)
        return int(data.get("page_count", 1))

    try:
        count = await page(1)
    except NotFound:
        raise NotFound(
            f"vhost {vhost!r} does not exist on {mgmt.display_url} (see 'rabbitmqctl list_vhosts')"
        ) from None
    if count > 1:
        gate = asyncio.Semaphore(max(concurrency, 1))

        async def gated(n: int) -> None:
            async with gate:
                await page(n)

        await asyncio.gather(*(gated(n) for n in range(2, count + 1)))
    return [item for n in sorted(pages) for item in pages[n]]
