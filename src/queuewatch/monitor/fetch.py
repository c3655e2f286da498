"""The one sweep a poll needs: every queue of a vhost, paged, a few pages in flight at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from queuewatch.errors import ManagementUnavailable, NotFound
from queuewatch.management import MAX_PAGE_SIZE, ManagementClient, q

#: Pages requested at the same time after the first (which tells how many there are).
PAGE_CONCURRENCY = 4


async def fetch_queues(
    mgmt: ManagementClient,
    vhost: str | None,
    columns: Sequence[str],
    *,
    page_size: int = MAX_PAGE_SIZE,
    concurrency: int = PAGE_CONCURRENCY,
) -> list[dict[str, Any]]:
    """All queues (``columns`` only) of ``vhost`` (None: every vhost), de-duplicated.

    Queues created or deleted during the sweep may shift page boundaries; a queue seen twice
    is kept once, as with any paged listing.
    """
    path = "/queues" if vhost is None else f"/queues/{q(vhost)}"
    size = max(1, min(page_size, MAX_PAGE_SIZE))
    cols = ",".join(columns)

    async def page(n: int) -> dict[str, Any]:
        data = await mgmt.request("GET", path, params={
            "page": n, "page_size": size, "columns": cols, "disable_stats": "false"})
        if not isinstance(data, dict) or "items" not in data:
            raise ManagementUnavailable(f"unexpected answer to paged GET {path}")
        return data

    try:
        first = await page(1)
    except NotFound:
        raise NotFound(
            f"vhost {vhost!r} does not exist on {mgmt.display_url} (see 'rabbitmqctl list_vhosts')"
        ) from None
    pages = [first]
    count = int(first.get("page_count", 1))
    if count > 1:
        gate = asyncio.Semaphore(max(concurrency, 1))

        async def gated(n: int) -> dict[str, Any]:
            async with gate:
                return await page(n)

        pages += await asyncio.gather(*(gated(n) for n in range(2, count + 1)))
    if count <= 1:
        return list(first["items"])
    seen: set[tuple[str, str]] = set()
    items = []
    for p in pages:
        for item in p["items"]:
            key = (item.get("vhost", ""), item.get("name", ""))
            if key not in seen:
                seen.add(key)
                items.append(item)
    return items
