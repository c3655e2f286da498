"""The poll loop: polls never overlap, errors go to on_error and polling goes on, stop ends it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from queuewatch.broker.management import ManagementClient
from queuewatch.errors import BrokerUnavailable, QueuewatchError
from queuewatch.monitor import Monitor, interval_warning
from queuewatch.monitor.model import Snapshot

pytestmark = pytest.mark.timeout(60)


class CountingMonitor(Monitor):
    """Records how many polls were in progress at once."""

    active = 0
    most = 0

    async def _poll(self) -> Snapshot:
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await asyncio.sleep(0.05)
            return await super()._poll()
        finally:
            self.active -= 1


async def test_concurrent_polls_wait_for_each_other(mgmt, settings):
    monitor = CountingMonitor(mgmt, settings)
    snaps = await asyncio.gather(*(monitor.poll() for _ in range(4)))
    assert monitor.most == 1
    assert len({s.taken_at for s in snaps}) == 4
    assert monitor.last is not None and monitor.last.taken_at == max(s.taken_at for s in snaps)


async def test_run_schedules_the_next_poll_after_the_last_and_warns(mgmt, settings, caplog):
    # Given a callback slower than the interval
    monitor = CountingMonitor(mgmt, settings)
    stop = asyncio.Event()
    seen: list[Snapshot] = []

    async def slow_callback(snap: Snapshot) -> None:
        seen.append(snap)
        await asyncio.sleep(0.1)
        if len(seen) == 3:
            stop.set()

    # When run at an interval below the broker's stats interval
    with caplog.at_level(logging.WARNING, logger="queuewatch.monitor.core"):
        await asyncio.wait_for(monitor.run(slow_callback, 0.01, stop=stop), 20)
    # Then polls never overlapped, and a warning was logged (never printed)
    assert len(seen) == 3 and monitor.most == 1
    assert [s.taken_at for s in seen] == sorted(s.taken_at for s in seen)
    assert any("statistics interval" in r.getMessage() for r in caplog.records)
    assert interval_warning(5.0) is None and interval_warning(1.0)


async def test_run_reports_errors_and_keeps_polling(settings):
    # Given a management URL where nothing listens
    bad = replace(settings, management_url="http://127.0.0.1:9", http_timeout=2)
    errors: list[QueuewatchError] = []
    stop = asyncio.Event()

    def on_error(exc: QueuewatchError) -> None:
        errors.append(exc)
        if len(errors) == 2:
            stop.set()

    async with ManagementClient(bad) as client:
        monitor = Monitor(client, bad)
        await asyncio.wait_for(monitor.run(lambda s: None, 0.2, on_error=on_error, stop=stop), 20)
        # Without on_error, the error ends the loop
        with pytest.raises(BrokerUnavailable):
            await monitor.run(lambda s: None, 5.0)
    assert len(errors) == 2 and all(isinstance(e, BrokerUnavailable) for e in errors)
