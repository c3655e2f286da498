"""Each tick fires exactly once when the leader is killed -9 exactly around a tick's publish:
just before it (the window that used to lose the tick: its unique lock taken, its job never
published) and just after it (the job published, nothing else recorded yet). A test seam
(QUEUEWATCH_TEST_SCHEDULER_PAUSE, read only by schedules/firing.py) stops the leader there;
the test kills it while it is stopped."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from pathlib import Path

import pytest

from queuewatch.config import Settings
from queuewatch.schedules.firing import TEST_PAUSE_ENV
from queuewatch.topology import QueueSpec
from tests.helpers import declare, drain, wait_until
from tests.schedulers import SchedulerProcess, start_scheduler

pytestmark = pytest.mark.timeout(120)


def tick_second(job_id: str) -> int:
    stamp = job_id.split("@", 1)[1]  # 2026-11-29T15:04:05Z
    h, m, s = (int(x) for x in stamp[11:19].split(":"))
    return h * 3600 + m * 60 + s


@pytest.mark.parametrize("where", ["before", "after"])
async def test_leader_killed_around_a_tick_publish_fires_that_tick_once(
        where: str, settings: Settings, vhost: str, tmp_path: Path, connection) -> None:  # type: ignore[no-untyped-def]
    # Given a 1-second schedule on "ticks" (nobody consumes: every published job stays
    # there to be counted), a leader that stops around its 3rd tick's publish, a follower
    await declare(connection, vhost, QueueSpec("ticks"), delay_levels=1)
    topo = tmp_path / "topology.toml"
    topo.write_text('[[queue]]\nname = "ticks"\n\n[[schedule]]\nname = "beat"\nqueue = "ticks"\n'
                    'every = 1\npayload = {}\n')
    procs: list[SchedulerProcess] = []
    try:
        s1 = start_scheduler(tmp_path, amqp_url=settings.amqp_url, vhost=vhost, name="s1",
                             topology=topo, extra_env={TEST_PAUSE_ENV: f"{where}:3"})
        procs.append(s1)
        await wait_until(lambda: s1.leads_at() is not None, timeout=60, what="s1 leads")
        s2 = start_scheduler(tmp_path, amqp_url=settings.amqp_url, vhost=vhost, name="s2",
                             topology=topo)
        procs.append(s2)
        paused = re.compile(rf"test seam: paused {where} publishing (beat@\S+)")
        await wait_until(lambda: paused.search(s1.stderr()) is not None, timeout=30,
                         what=f"s1 stops {where} a publish")
        await wait_until(lambda: "s2 ready" in s2.stderr(), timeout=60, what="s2 started")
        window_tick = paused.search(s1.stderr()).group(1)  # type: ignore[union-attr]
        # When the leader is killed -9 right there, and the follower takes over
        s1.kill9()
        await wait_until(lambda: s2.leads_at() is not None, timeout=15, what="s2 takes over")
        await wait_until(lambda: "s2 leads" in s2.stderr(), timeout=5, what="s2 log")
        await asyncio.sleep(3)
        assert s2.terminate() == 0
        # Then the tick of the window is in the queue exactly once, and so is every tick
        # from the first to the last (no gap, no double)
        got = [m.message_id or "" for m in await drain(connection, "ticks", 500, timeout=3)]
        counts = Counter(got)
        doubles = {j: n for j, n in counts.items() if n > 1}
        seconds = sorted(tick_second(j) for j in counts)
        gaps = [(a, b) for a, b in itertools.pairwise(seconds) if b - a != 1]
        print(f"{where}: window tick {window_tick}, {len(got)} jobs, doubles={doubles}, gaps={gaps}")
        assert counts[window_tick] == 1, f"the tick of the window fired {counts[window_tick]} times"
        assert not doubles, f"ticks fired twice: {doubles}"
        assert not gaps, f"missing ticks between {gaps}"
        assert len(counts) >= 5
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(10)
