"""``queuewatch scheduler``: fire every schedule's ticks, each tick once, from any number of
scheduler processes.

**One leader.** Each scheduler tries to declare the exclusive queue
:data:`LEADER_QUEUE`; RabbitMQ lets only one connection own it, so its owner is the leader
and the others are followers that try again every :data:`ELECT_INTERVAL`. When the leader
dies its connection goes, the broker deletes the queue, and the next try of a follower
wins (a kill -9 closes the socket at once; a silent network loses it after the AMQP
heartbeat). A leader whose link reconnects has lost the lead (a new connection) and
competes again.

**Each tick once.** A tick's job id is ``<schedule>@<tick time>`` (the same in every
process). The leader publishes it on its own connection, to the queue and to the ledger
stream by one publish (see :mod:`.firing`): the job is in the queue exactly when its copy is
in the ledger. A new leader first reads the ledger to its end (a marker round trip) and
fires every tick after the last one there; so a leader killed at any moment — before,
during or after a publish — leaves no tick unfired and none fired twice. A leader whose
connection is gone cannot publish a tick any more (it would need the lost connection).
Ticks older than the ledger's retention are also looked up in the job events.

**Missed ticks.** A tick up to ``grace`` seconds late fires normally; older ticks (no
scheduler ran) follow the schedule's ``missed`` policy: ``skip`` (recorded as skipped) or
``fire_once`` (one job, with the id of the latest missed tick).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from queuewatch.aio import wait_for
from queuewatch.broker.errors import LINK_OR_AMQP_ERRORS
from queuewatch.broker.link import BrokerLink
from queuewatch.broker.types import Channel
from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError
from queuewatch.schedules.book import FIRED, H_SCHEDULE, H_TICK, REFUSED, SKIPPED, Entry
from queuewatch.schedules.firing import TickOutcome, TickPublisher
from queuewatch.schedules.spec import Schedule, schedules_from_topology, tick_id
from queuewatch.schedules.store import ScheduleStore, now_ms
from queuewatch.topology import Topology

if TYPE_CHECKING:
    from queuewatch.jobs import Jobs

log = logging.getLogger(__name__)

LEADER_QUEUE = "queuewatch.scheduler.leader"
#: How often a follower tries to take the lead (seconds).
ELECT_INTERVAL = 0.5
#: How often the leader looks for due ticks (seconds).
TICK_INTERVAL = 0.1
#: Pause before a schedule whose tick could not be published is tried again (seconds).
RETRY_AFTER = 1.0
#: Most missed cron ticks walked through to find the latest one.
MAX_WALK = 100_000
__all__ = ["H_SCHEDULE", "H_TICK", "Fired", "Scheduler", "next_run"]


@dataclass(frozen=True)
class Fired:
    name: str
    tick_ms: int
    job_id: str
    duplicate: bool
    """The tick's job was found published already (not sent again)."""
    missed: bool = False


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def last_tick_until(s: Schedule, after_ms: int, until_ms: int) -> int | None:
    """The latest tick in (after_ms, until_ms], or None."""
    if s.every is not None:
        step = max(round(s.every * 1000), 1)
        last = until_ms // step * step
        return last if last > after_ms else None
    found, t = None, s.next_tick(after_ms)
    for _ in range(MAX_WALK):
        if t is None or t > until_ms:
            break
        found, t = t, s.next_tick(t)
    return found


class Scheduler:
    """See the module docstring. ``async with Scheduler(settings, topology) as s: await
    s.run()``; :meth:`stop` ends :meth:`run`."""

    def __init__(self, settings: Settings, topology: Topology | None = None, *,
                 name: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.topology = topology
        self.declared = schedules_from_topology(topology.schedules) if topology else []
        self.name = name or default_name()
        # A scheduler with a name keeps its job index across restarts (later starts read only
        # what is new); one named after its pid reads the events once and deletes it at close.
        self._index_path = settings.state_dir / f"scheduler-{self.name}.index.sqlite"
        self._index_is_temporary = name is None
        self.clock = clock
        self.link = BrokerLink(settings, name=f"queuewatch-scheduler {self.name}")
        self.store = ScheduleStore(self.link, by=self.name)
        self.ticks = TickPublisher(self.link, settings, self.name)
        self.jobs: Jobs | None = None
        self.fired: list[Fired] = []
        self.on_fired: Callable[[Fired], None] | None = None
        self.leader_since: float | None = None
        self._leader_conn: int | None = None
        self._leader_channel: Channel | None = None
        self._cursors: dict[str, int] = {}
        self._retry_at: dict[str, int] = {}
        """Schedule -> when to try again after a tick could not be published."""
        self._stop = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> None:
        await self.link.open(timeout)
        await self.store.start()
        changed = await self.store.sync_file(self.declared)
        if changed:
            log.info("schedules written from the topology: %s", ", ".join(s.name for s in changed))
        if self.settings.job_events:
            from queuewatch.jobs import Jobs

            self.jobs = Jobs(self.settings, link=self.link, index=self._index_path)
            await self.jobs.start(timeout)
        log.info("scheduler %s ready: %d schedule(s)", self.name, len(self.store.book.entries))

    async def close(self) -> None:
        self._stop.set()
        if self.jobs is not None:
            await self.jobs.close()
            if self._index_is_temporary:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(self._index_path) + suffix).unlink(missing_ok=True)
        await self.ticks.close()
        await self.store.close()
        await self.link.close()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stop(self) -> None:
        self._stop.set()

    @property
    def is_leader(self) -> bool:
        return (self._leader_conn is not None and self.link.alive
                and self.link.connects == self._leader_conn)

    async def run(self) -> None:
        while not self._stop.is_set():
            if not self.is_leader:
                if self._leader_conn is not None:
                    log.warning("scheduler %s lost the lead (link lost)", self.name)
                    self._leader_conn, self.leader_since = None, None
                await self._try_lead()
            if self.is_leader:
                try:
                    await self.fire_due()
                except QueuewatchError as exc:  # logged, and tried again on the next turn
                    log.error("scheduler %s: %s", self.name, exc)
            interval = TICK_INTERVAL if self.is_leader else ELECT_INTERVAL
            try:
                await wait_for(self._stop.wait(), interval)
            except TimeoutError:
                pass

    # -- the lead --------------------------------------------------------------------------
    async def _try_lead(self) -> None:
        try:
            channel = await self.link.channel(timeout=5.0)
        except LINK_OR_AMQP_ERRORS:
            return
        connects = self.link.connects
        try:
            await channel.declare_queue(LEADER_QUEUE, exclusive=True, durable=False)
        except LINK_OR_AMQP_ERRORS:  # RESOURCE_LOCKED: another scheduler leads
            if not channel.is_closed:
                await channel.close()
            return
        self._leader_channel = channel
        # Everything the previous leader recorded, before firing anything.
        if not await self.store.ledger.catch_up():
            return  # tried again on the next turn (the queue stays ours)
        self._leader_conn = connects
        self.leader_since = time.time()
        self._cursors.clear()
        log.warning("scheduler %s leads", self.name)
        await self.store.ledger_write({"op": "leader"})

    # -- ticks -----------------------------------------------------------------------------
    async def fire_due(self) -> list[Fired]:
        """Fire every tick that is due (the leader's turn)."""
        now = int(self.clock() * 1000)
        out: list[Fired] = []
        for name, entry in list(self.store.book.entries.items()):
            if entry.paused or self._retry_at.get(name, 0) > now:
                continue
            out.extend(await self._fire_schedule(name, entry, now))
        return out

    async def _fire_schedule(self, name: str, entry: Entry, now: int) -> list[Fired]:
        s = entry.schedule
        cursor = max(entry.cursor_ms or 0, entry.defined_ms, self._cursors.get(name, 0))
        t = s.next_tick(cursor)
        out: list[Fired] = []
        if t is None or t > now:
            return out
        cut = now - int(s.grace * 1000)
        if t <= cut:
            last = last_tick_until(s, cursor, cut)
            if last is not None:
                if s.missed == "fire_once":
                    done = await self._fire(s, last, missed=True)
                    if done is None:
                        return out
                    out.append(done)
                else:
                    log.warning("schedule %s: ticks missed from %s to %s skipped (missed = skip)",
                                name, tick_id(name, t), tick_id(name, last))
                    await self.store.ledger_write({"op": SKIPPED, "name": name, "tick": last,
                                                   "from": t})
                self._cursors[name] = cursor = last
                t = s.next_tick(cursor)
        while t is not None and t <= now and self.is_leader:
            done = await self._fire(s, t)
            if done is None:
                break
            out.append(done)
            self._cursors[name] = t
            t = s.next_tick(t)
        return out

    async def _fire(self, s: Schedule, tick: int, *, missed: bool = False) -> Fired | None:
        job_id = tick_id(s.name, tick)
        duplicate = False
        if self.jobs is not None and (await self.jobs.status(job_id, fresh=False)).known:
            # Older than the ledger's retention, or fired by hand: recorded, not sent again.
            duplicate = True
            await self.store.ledger_write({"op": FIRED, "name": s.name, "tick": tick,
                                           "job": job_id, "duplicate": True, "missed": missed})
        elif not self.is_leader:
            return None
        else:
            outcome, why = await self.ticks.publish(s, tick)
            if outcome is not TickOutcome.FIRED:
                if outcome is TickOutcome.REFUSED:  # its ledger copy came first: undo it
                    await self.store.ledger_write({"op": REFUSED, "name": s.name, "tick": tick})
                log.error("schedule %s: tick %s not fired (tried again in %gs): %s", s.name,
                          job_id, RETRY_AFTER, why)
                self._retry_at[s.name] = int((self.clock() + RETRY_AFTER) * 1000)
                return None
        done = Fired(s.name, tick, job_id, duplicate, missed)
        self.fired.append(done)
        if self.on_fired is not None:
            self.on_fired(done)
        return done


def next_run(entry: Entry, now_ms_: int | None = None) -> int | None:
    """When the schedule's next tick comes (None while paused or never)."""
    if entry.paused:
        return None
    now = now_ms() if now_ms_ is None else now_ms_
    return entry.schedule.next_tick(max(entry.cursor_ms or 0, entry.defined_ms, now - 1))
