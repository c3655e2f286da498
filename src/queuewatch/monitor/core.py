"""The monitor: one poll of the management API (plus heartbeats) -> one frozen Snapshot.

A poll costs one paged ``/api/queues/<vhost>?columns=...`` sweep (a few pages at a time),
with ``/api/nodes`` and ``/api/overview`` fetched alongside it; ``/api/connections`` is
asked only when a worker's heartbeat went stale and the hung-worker question needs it.
No per-queue requests.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from queuewatch.aio import wait_for
from queuewatch.broker.management import ManagementClient
from queuewatch.config import BROKER_STATS_INTERVAL, Settings
from queuewatch.errors import NotAuthorised, QueuewatchError
from queuewatch.events.queuestate import QueueState
from queuewatch.monitor.alerts import build_alerts
from queuewatch.monitor.detect import (
    StallTracker,
    build_workers,
    find_orphaned,
    find_stuck_jobs,
    needs_connection_check,
)
from queuewatch.monitor.fetch import fetch_queues
from queuewatch.monitor.freshness import ALWAYS_LIVE, feed_alert
from queuewatch.monitor.heartbeats import HeartbeatSource
from queuewatch.monitor.history import QueueHistory
from queuewatch.monitor.model import BrokerInfo, NodeStats, QueueStats, Snapshot
from queuewatch.monitor.pacing import Pace, pace
from queuewatch.monitor.paused import with_queue_state
from queuewatch.monitor.producers import build_producers, producer_alerts
from queuewatch.monitor.queues import MONITOR_QUEUE_COLUMNS, ack_count, parse_queue
from queuewatch.telemetry import is_private_queue
from queuewatch.topology import DLQ_SUFFIX, Topology

log = logging.getLogger(__name__)

NODE_COLUMNS = (
    "name,running,mem_alarm,disk_free_alarm,mem_used,mem_limit,disk_free,disk_free_limit,"
    "partitions"
)
OVERVIEW_COLUMNS = "rabbitmq_version,cluster_name,erlang_version,node"
CONNECTION_COLUMNS = "name,user_provided_name,client_properties.connection_name"

SnapshotCallback = Callable[[Snapshot], Awaitable[None] | None]
ErrorCallback = Callable[[QueuewatchError], Awaitable[None] | None]


def interval_warning(interval: float) -> str | None:
    """A warning when ``interval`` is below the broker's statistics interval, else None."""
    if interval < BROKER_STATS_INTERVAL:
        return (
            f"poll interval {interval:g}s is below the broker's statistics interval "
            f"({BROKER_STATS_INTERVAL:g}s): polls in between show the same numbers"
        )
    return None


class Monitor:
    """Polls one vhost (or all, with ``all_vhosts``) and judges what it sees.

    Dependencies come in: the management client, settings (thresholds, history size), a
    clock (epoch seconds), an optional topology (per-queue ``stuck_after``) and an optional
    heartbeat source (workers, stuck jobs, hung workers).
    """

    def __init__(
        self,
        mgmt: ManagementClient,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        topology: Topology | None = None,
        heartbeats: HeartbeatSource | None = None,
        all_vhosts: bool = False,
        keep_history: bool = True,
    ) -> None:
        self.mgmt = mgmt
        self.settings = settings
        self.clock = clock
        self.topology = topology
        self.heartbeats = heartbeats
        self.queue_states: Mapping[str, QueueState] | None = None
        self.scheduled: Callable[[], Mapping[str, int]] | None = None
        """Scheduled jobs per target queue (from the job events' index, set by a face that
        reads them); None: the column stays unknown."""
        """Paused queues and run-time limits (the session's queue-state reader), if known."""
        self.vhost: str | None = None if all_vhosts else settings.effective_vhost
        self.history = QueueHistory(settings.history_size)
        """Per-queue history (``monitor.history.get(name)``), oldest first."""
        self.keep_history = keep_history
        """False for faces that never draw it (the exporter, commands): at 50,000 queues the
        history of 120 polls is about 150 MB."""
        self.last: Snapshot | None = None
        self.warning = interval_warning(settings.poll_interval)
        """Set when ``settings.poll_interval`` is below the broker's statistics interval."""
        self._stalls = StallTracker(settings.thresholds.stalled_polls)
        self._stuck_overrides = {
            spec.name: spec.stuck_after for spec in (topology.queues if topology else ())
            if spec.stuck_after is not None
        }
        self._dlq_depths: dict[tuple[str, str], int] = {}
        self._lock = asyncio.Lock()

    # -- one poll -----------------------------------------------------------------------
    async def poll(self) -> Snapshot:
        """Fetch and judge; concurrent callers wait for each other (polls never overlap)."""
        async with self._lock:
            snap = await self._poll()
            self.last = snap
            return snap

    async def _poll(self) -> Snapshot:
        started = time.perf_counter()
        parsed: dict[int, list[QueueStats]] = {}
        scheduled = self.scheduled() if self.scheduled is not None else None

        def parse_page(n: int, items: list[dict[str, Any]]) -> None:
            # parsed while the broker prepares the next pages; ages use this page's arrival
            at = self.clock()
            parsed[n] = [parse_queue(r, at, self._stuck_after(r["name"]), scheduled)
                         for r in items if not is_private_queue(str(r["name"]))]

        raw_queues, (raw_nodes, nodes_hidden), overview = await asyncio.gather(
            fetch_queues(self.mgmt, self.vhost, MONITOR_QUEUE_COLUMNS, on_page=parse_page),
            self._nodes(),
            self._overview(),
        )
        now = self.clock()
        queues = self._link_dlqs([qs for n in sorted(parsed) for qs in parsed[n]])
        acks = {(str(r.get("vhost", "")), str(r["name"])): ack_count(r) for r in raw_queues}
        qualified = self.vhost is None  # all vhosts: name queues as vhost/name
        stalled = self._stalls.update(queues, acks, qualified)
        orphaned = find_orphaned(queues, qualified)
        nodes = tuple(_node(n) for n in raw_nodes or ())

        t = self.settings.thresholds
        beats = self.heartbeats.latest() if self.heartbeats is not None else {}
        feed = self.heartbeats.feed() if self.heartbeats is not None else None
        open_conns = None
        if feed is not None and needs_connection_check(beats, now, t.heartbeat_stale_seconds, feed):
            open_conns = await self._connection_names()
        workers = build_workers(beats, now, t.heartbeat_stale_seconds, open_conns,
                                feed or ALWAYS_LIVE)
        queues = with_queue_state(queues, workers, self.queue_states, self.topology,
                                  self.settings.effective_vhost)
        paused = {q.ref(qualified) for q in queues if q.paused}
        orphaned = tuple(r for r in orphaned if r not in paused)
        stuck = find_stuck_jobs(workers, now, self._stuck_after)
        alerts = build_alerts(queues, nodes, workers, stuck, stalled, orphaned, t, qualified)
        producers = build_producers(beats, now, t.heartbeat_stale_seconds, feed or ALWAYS_LIVE)
        alerts = tuple(sorted((*alerts, *producer_alerts(producers, t)),
                              key=lambda a: a.severity != "critical"))
        lost = feed_alert(feed, now)
        if lost is not None:
            alerts = tuple(sorted((*alerts, lost), key=lambda a: a.severity != "critical"))
        if self.keep_history:
            self.history.record(now, queues)
        return Snapshot(
            taken_at=now, vhost=self.vhost,
            broker=BrokerInfo(
                url=self.mgmt.display_url, version=overview.get("rabbitmq_version"),
                cluster_name=overview.get("cluster_name"),
                erlang_version=overview.get("erlang_version"), node=overview.get("node"),
            ),
            nodes=nodes, queues=tuple(queues), workers=workers, stuck_jobs=stuck,
            stalled_queues=stalled, orphaned_queues=orphaned, alerts=alerts,
            poll_seconds=time.perf_counter() - started, nodes_hidden=nodes_hidden,
            heartbeats=feed, producers=producers,
        )

    async def _nodes(self) -> tuple[list[dict[str, Any]], str | None]:
        """The nodes, or none and why: a user with only the ``management`` tag may see
        queues but not nodes, and that must not stop the monitor."""
        try:
            return await self.mgmt.nodes(NODE_COLUMNS), None
        except NotAuthorised:
            user = self.settings.credentials[0]
            return [], f"user {user!r} lacks the 'monitoring' tag: node alarms unknown"

    async def _overview(self) -> dict[str, Any]:
        return await self.mgmt.overview_columns(OVERVIEW_COLUMNS)

    async def _connection_names(self) -> set[str]:
        names: set[str] = set()
        for c in await self.mgmt.connections(self.vhost, CONNECTION_COLUMNS):
            props = c.get("client_properties") or {}
            for name in (c.get("user_provided_name"), props.get("connection_name")):
                if name:
                    names.add(str(name))
        return names

    def _stuck_after(self, queue: str) -> float:
        return self._stuck_overrides.get(queue, self.settings.thresholds.stuck_job_seconds)

    def _link_dlqs(self, queues: list[QueueStats]) -> list[QueueStats]:
        """Give each queue that has a ``Q.dlq`` its DLQ's depth and growth since last poll."""
        by_key = {qs.key: qs for qs in queues}
        depths: dict[tuple[str, str], int] = {}
        out = []
        for qs in queues:
            dlq = by_key.get((qs.vhost, qs.name + DLQ_SUFFIX))
            if dlq is not None:
                depth = dlq.depth  # None while the DLQ is down: unknown, and no growth
                previous = self._dlq_depths.get(dlq.key)
                growth = None if previous is None or depth is None else depth - previous
                if depth is not None:
                    depths[dlq.key] = depth
                elif previous is not None:
                    depths[dlq.key] = previous  # compare with the last known depth when back
                qs = replace(qs, dlq=dlq.name, dlq_depth=depth, dlq_growth=growth)
            out.append(qs)
        self._dlq_depths = depths
        return out

    # -- polling forever ------------------------------------------------------------------
    async def run(
        self,
        callback: SnapshotCallback,
        interval: float | None = None,
        *,
        on_error: ErrorCallback | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Poll, hand the snapshot to ``callback``, wait ``interval``, repeat until ``stop``.

        The next poll is scheduled only when the last one (and its callback) finished, so
        polls never overlap; after a poll slower than ``interval`` the pause stretches
        (:mod:`queuewatch.monitor.pacing`). A :class:`QueuewatchError` goes to ``on_error`` (polling goes on)
        or, without one, ends the loop.
        """
        every = self.settings.poll_interval if interval is None else interval
        await poll_forever(self.poll, callback, every, on_error=on_error, stop=stop)


async def poll_forever(
    poll: Callable[[], Awaitable[Snapshot]],
    callback: SnapshotCallback,
    every: float,
    *,
    on_error: ErrorCallback | None = None,
    stop: asyncio.Event | None = None,
    on_pace: Callable[[Pace], None] | None = None,
) -> None:
    """The loop behind :meth:`Monitor.run` (and the session's ``run``): the pause after a
    poll is ``every``, stretched after a poll slower than that (:mod:`.pacing`);
    ``on_pace`` hears the pause chosen after each good poll, before ``callback``."""
    warning = interval_warning(every)
    if warning:
        log.warning(warning)
    stop = stop or asyncio.Event()
    while not stop.is_set():
        wait = every
        try:
            snap = await poll()
            current = pace(every, snap.poll_seconds, len(snap.queues))
            wait = current.pause  # stretched after a poll slower than the interval
            if on_pace is not None:
                on_pace(current)
            await _call(callback, snap)
        except QueuewatchError as exc:
            if on_error is None:
                raise
            await _call(on_error, exc)
        try:
            await wait_for(stop.wait(), wait)
        except TimeoutError:
            pass


async def _call(fn: Callable[[Any], Awaitable[None] | None], arg: Any) -> None:
    result = fn(arg)
    if inspect.isawaitable(result):
        await result


def _node(n: Mapping[str, Any]) -> NodeStats:
    partitions = n.get("partitions")
    return NodeStats(
        name=str(n.get("name")), running=bool(n.get("running", False)),
        mem_alarm=bool(n.get("mem_alarm", False)), disk_alarm=bool(n.get("disk_free_alarm", False)),
        mem_used=n.get("mem_used"), mem_limit=n.get("mem_limit"),
        disk_free=n.get("disk_free"), disk_free_limit=n.get("disk_free_limit"),
        partitions=tuple(str(p) for p in partitions) if isinstance(partitions, list) else (),
    )
