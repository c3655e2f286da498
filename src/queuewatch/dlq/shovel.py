"""Bulk replay through RabbitMQ's own shovel: as fast as the broker moves messages, with the
poison-loop guard still exact.

``DeadLetterQueue.replay(via_shovel=True)`` / ``queuewatch dlq replay --via-shovel``.

How it works::

    DLQ --shovel--> queuewatch.replay.<id>  (headers exchange)
                      | qw-dead-queue = the job queue and
                      | qw-replay-count = 0 .. N-1  --> the job queue
                      | anything else (alternate exchange)
                      +--> queuewatch.replay.<id>.held (exchange) --> back to the DLQ's tail
                           (or, a quorum queue on either side, to the queue of that name,
                           then by a second shovel to the DLQ's tail)

* The shovel runs inside the broker with ``ack-mode: on-confirm`` (a dead letter is acked
  only after its republish is confirmed: loss-free) and ``src-delete-after: queue-length``
  (it moves the dead letters present when it starts, then removes itself, even if the
  process that created it dies).
* The guard and the route are applied by the broker, per message: the queuewatch worker
  writes ``qw-dead-queue`` and ``qw-replay-count`` on every dead letter, and only the
  destination queue with counts below the limit is bound to it. Dead letters at the limit,
  from another queue, or without the headers (foreign queues, older versions), go back to
  the tail of the DLQ, where a per-message replay (the default path) then handles them: it
  replays what it may and leaves poison where it is.
* The shovel cannot write headers, so the replay is marked by the exchange it comes
  through: the worker gives a job delivered from ``queuewatch.replay.*`` fresh attempts and
  adds the replay to ``qw-replay-count`` on any copy it makes (retry or dead letter).

A filter on the error type and/or the reason is applied by the broker too
(:mod:`queuewatch.dlq.split`): the split exchange's bindings also name the error type and
the reason, so the broker routes only dead letters the filter selects; the rest is held
back and the per-message replay then applies the full filter to it (so what is replayed is
exactly what a dry run counts, and what the filter leaves out stays in the DLQ, in its
order). The automatic choice takes this way when any of the DLQ's head would be moved by
the broker (:data:`MIN_SHARE`): every dead letter held back is moved twice, and still the
shovel was the quicker at every share measured.

Where it does not fit it is refused (:class:`ShovelNotApplicable`), checked up front: a
filter on anything but the error type and the reason, a rate or a limit (the shovel moves
everything, as fast as it can); dead letters at the head that go back through an exchange
rather than straight to their queue; a DLQ with a length limit (dead letters held back
re-enter it and could push others out).

The order changes for what is held back: it ends up behind everything else in the DLQ.

**With a quorum queue on either side, what is held back goes to a queue of its own**
(:mod:`queuewatch.dlq.held`), moved to the DLQ's tail by a second shovel once the first has
ended. The shovel counts the acks it sends (``src-delete-after``), and once the count
reaches the DLQ's length it stops, giving back what it has not acked. Dead letters held
back straight into the DLQ it reads are sent to it again, and it acks them as their
republishes are confirmed. When those confirms come before the confirms of the last
original dead letters (a quorum DLQ or job queue confirms on its own schedule), the count
ends while some originals are unacked: they go back to the DLQ although their republish
arrived. Measured: 3,000 dead letters, half matching, a quorum DLQ (5 of 9 runs) or a quorum
job queue (1 of 5) left 47 to 693 replayed dead letters also in the DLQ, at its head; two
classic queues, 0 of 14 and none in the benchmarks' runs (not proven impossible: a held back
dead letter's confirm must overtake, which two classic queues on one node did not show), so
they keep the single shovel, the quicker (the second pass costs about a quarter).
Dead letters that arrive in the DLQ during the replay can end the count early the same
way, and under disk load the shovel's last acks can be lost as it closes (docs/dlq.md):
after a first shovel that held back apart, the redelivered dead letters at the DLQ's head
are reported in doubt (:func:`given_back`) and left there by the per-message pass after.

The wait for the shovel has deadlines too: if the management API or the AMQP link is lost
mid-way, the replay ends at once with a report (the shovel itself goes on inside the broker
and removes itself when done; its exchanges stay until the next shovel replay sweeps them);
if the DLQ does not shrink for :data:`STALL_SECONDS`, the shovel is deleted (what it had
not acked goes back to the DLQ) and the replay ends with a report.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from itertools import takewhile

from queuewatch import envelope as env
from queuewatch.broker import wire
from queuewatch.broker.management import ManagementClient
from queuewatch.broker.wire import Connection
from queuewatch.config import Settings
from queuewatch.dlq import replay as client
from queuewatch.dlq.channel import once_fewer_consumers, queue_depth
from queuewatch.dlq.decode import header_text
from queuewatch.dlq.held import (
    MovedBack,
    back_name,
    declare_held,
    held_queue,
    move_back,
    move_back_orphan,
    start_back,
)
from queuewatch.dlq.model import REPLAY_SHOVEL_PREFIX, Route
from queuewatch.dlq.peek import ProgressFn, peek
from queuewatch.dlq.replay import ReplayOptions, ReplayResult
from queuewatch.dlq.shovelrun import (
    SRC_PREFETCH,
    LostSight,
    Moved,
    Stalled,
    definition,
    not_running,
    replay_shovels,
    wait_gone,
)
from queuewatch.dlq.split import (
    broker_can_filter,
    broker_routes,
    declare,
    drop,
    exchange_names,
    look_names,
    replay_of,
)
from queuewatch.dlq.targets import dest_refusal, nacked_back
from queuewatch.errors import QueuewatchError

log = logging.getLogger(__name__)

SAMPLE = 100
"""Dead letters looked at up front to find the destination."""
SPLIT_PREFETCH = 250
"""The shovel's prefetch on a classic DLQ when at least :data:`SPLIT_SHARE` of the sampled
head goes back into it: with confirms from two queues, one of them the DLQ being read, a
deep prefetch made the replay slower. 20,000 dead letters, 2 runs each, 250 against 2,000:
half matching 5,334-5,956/s and 4,012-5,548/s, 20% 5,714-5,828/s and 4,166-4,268/s, 1%
5,687-7,005/s and 5,605-6,152/s; at 80% and all matching 2,000 was the quicker
(BENCHMARKS.md, "The shovel's prefetch on a DLQ that takes much back")."""
SPLIT_SHARE = 0.25
"""Share of the sampled head held back from which :data:`SPLIT_PREFETCH` is taken."""
MAX_BINDINGS = 256
"""The largest replay limit served by one binding per allowed count."""
LIMIT_ARGS = ("x-max-length", "x-max-length-bytes", "max-length", "max-length-bytes")
MIN_SHARE = 0.01
"""A filtered replay takes the shovel by itself only when at least this share of the DLQ's
head (one of the first :data:`SAMPLE`) would be moved by the broker. The broker moves every
dead letter (those held back go back into the DLQ), the per-message replay reads every one
in Python: measured on 20,000 dead letters (``python -m bench.replay_share``), the shovel
was 1.5-1.65x as fast at 1% matching, 1.3-1.6x at 5%, 1.4-1.5x at 20% and 1.8x at 50%
(and more before the per-message replay read on several channels). With none matching at
the head the per-message replay reads the DLQ without moving it."""


@dataclass(frozen=True)
class Plan:
    """What the look at the DLQ found: where the shovel sends on to, how many it moves."""

    dest: str
    """The job queue (default exchange)."""
    total: int
    """Dead letters in the DLQ when the replay starts."""
    held_share: float = 0.0
    """Share of the sampled head the broker would hold back (back into the DLQ)."""
    held_apart: bool = False
    """Hold back into a queue of its own, moved back to the DLQ after (a quorum queue on
    either side: :mod:`queuewatch.dlq.held`), rather than straight back into the DLQ."""
    dest_limited: bool = False
    """The job queue has a length limit (``reject-publish``): a republish the shovel sends
    there can be nacked, and the shovel then puts the dead letter back in the DLQ, where
    only a look tells it from one held back (see :func:`nacked_back`)."""

    def prefetch(self) -> int:
        """The shovel's ``src-prefetch-count`` (see :data:`SPLIT_PREFETCH`)."""
        return SPLIT_PREFETCH if self.held_share >= SPLIT_SHARE else SRC_PREFETCH


class ShovelNotApplicable(QueuewatchError):
    """The DLQ cannot be replayed by a shovel (use the default, per-message replay)."""


class ReplayInProgress(QueuewatchError):
    """A replay shovel is already moving this DLQ."""


async def check_applicable(
    connection: Connection, mgmt: ManagementClient, vhost: str, queue: str,
    opts: ReplayOptions, min_share: float = 0.0,
) -> Plan:
    """The :class:`Plan`, or :class:`ShovelNotApplicable` saying why not.

    ``min_share``: refuse a filtered replay when less than this share of the head would
    be moved by the broker."""
    if not broker_can_filter(opts.flt) or opts.rate or opts.limit is not None \
            or opts.dry_run or opts.to is not None:
        raise ShovelNotApplicable("a shovel replays everything, filtered at most by error type "
                                  "and reason: no other filter (job ids, text, age), rate, "
                                  "limit or dry run (drop --via-shovel)")
    if not opts.force and opts.max_replays > MAX_BINDINGS:
        raise ShovelNotApplicable(f"a replay limit above {MAX_BINDINGS} needs the default replay")
    info = await mgmt.queue(vhost, queue) or {}
    limits = {**(info.get("effective_policy_definition") or {}), **(info.get("arguments") or {})}
    if any(k in limits for k in LIMIT_ARGS):
        raise ShovelNotApplicable(f"{queue!r} has a length limit: dead letters held back would "
                                  "re-enter it and could push others out (use the default)")
    page = await peek(connection, queue, 0, SAMPLE)
    if page.total == 0:
        return Plan("", 0)
    ours = [d for d in page.items
            if env.H_REPLAY_COUNT in d.headers and env.H_DEAD_QUEUE in d.headers]
    if not ours:
        raise ShovelNotApplicable(f"no dead letter at the head of {queue!r} carries the "
                                  f"{env.H_DEAD_QUEUE} and {env.H_REPLAY_COUNT} headers a "
                                  "queuewatch worker writes; the shovel would hold them all "
                                  "back (use the default)")
    routes = {d.death.route for d in ours} | {
        Route("", str(header_text(d.headers[env.H_DEAD_QUEUE]))) for d in ours}
    if len(routes) != 1 or None in routes:
        raise ShovelNotApplicable(f"the head of {queue!r} goes back to {len(routes)} different "
                                  "routes (or none); a shovel has one destination")
    route = routes.pop()
    assert route is not None
    moved = sum(broker_routes(d, opts.flt, opts.force, opts.max_replays) for d in page.items)
    if not opts.flt.is_empty and min_share > 0 and moved < min_share * len(page.items):
        raise ShovelNotApplicable(f"the broker would move {moved} of the first "
                                  f"{len(page.items)}: the per-message replay is quicker")
    if route.exchange != "":
        raise ShovelNotApplicable(f"dead letters go back through exchange {route.exchange!r}: "
                                  "a shovel cannot report unroutable messages (use the default)")
    await queue_depth(connection, route.routing_key)  # NotFound if the queue is gone
    held = 1 - moved / len(page.items)
    dest_info = await mgmt.queue(vhost, route.routing_key) or {}
    why = dest_refusal(route.routing_key, dest_info, info, page.total)
    if why is not None:
        raise ShovelNotApplicable(why)
    # Held apart with a quorum queue on either side, even when the head holds nothing back:
    # dead letters deeper in may be (at the replay limit, foreign, of another queue).
    kinds = {str(info.get("type") or "classic"), str(dest_info.get("type") or "classic")}
    apart = kinds != {"classic"}
    dest_limits = {**(dest_info.get("effective_policy_definition") or {}),
                   **(dest_info.get("arguments") or {})}
    return Plan(route.routing_key, page.total, held, apart,
                any(k in dest_limits for k in LIMIT_ARGS))


async def sweep(connection: Connection, mgmt: ManagementClient, vhost: str) -> list[MovedBack]:
    """Clean up after replays whose process was killed (or lost the broker) before it could:
    their shovels finished on their own, what they held back in a queue of its own goes back
    to its DLQ (:func:`~queuewatch.dlq.held.move_back_orphan`), then their exchanges are
    deleted. Returns what was moved back.

    A replay shovel that is defined but not running (:func:`~queuewatch.dlq.shovelrun.
    not_running`: its process was killed as it created it) is deleted first; its replay
    is then cleaned up as any other whose shovels are gone."""
    alive = await replay_shovels(mgmt, vhost)
    for name in await not_running(mgmt, vhost, alive):
        log.warning("replay shovel %s was defined but not running (its replay was killed "
                    "as it created it): definition deleted", name)
        await mgmt.delete_shovel(vhost, name)
        del alive[name]
    moved: list[MovedBack] = []
    for ex in await mgmt.exchanges(vhost):
        name = str(ex.get("name", ""))
        shovel = replay_of(name)  # the held back and look exchanges go with their split one
        if shovel is None or shovel in alive or back_name(shovel) in alive:
            continue
        try:
            if (back := await move_back_orphan(connection, mgmt, vhost, shovel)) is not None:
                moved.append(back)
        except (LostSight, Stalled) as exc:
            # Its shovel moving back goes on (stalled) or the broker is gone: ensure_not_busy
            # refuses the DLQ while the former runs; the next sweep tries again.
            log.warning("could not move back what replay %s held back: %s", shovel, exc)
            continue
        await drop(connection, shovel)
    return moved


async def ensure_not_busy(mgmt: ManagementClient, vhost: str, queue: str) -> None:
    """Refuse (:class:`ReplayInProgress`) while a replay shovel still moves ``queue``: a
    second shovel, a purge or delete would leave it waiting for the share it can no longer
    get, and it would then move dead letters that arrive later."""
    busy = [name for name, run in (await replay_shovels(mgmt, vhost)).items()
            if queue in (run.src, run.dest_queue)]
    if busy:
        raise ReplayInProgress(
            f"a replay shovel is already moving {queue!r} ({busy[0]}; its replay may have been "
            "killed, the shovel goes on by itself). Wait until it is gone, or stop it: "
            f"rabbitmqctl delete_shovel -p {vhost} {busy[0]} (if that says it is not found: "
            f"rabbitmqctl clear_parameter -p {vhost} shovel {busy[0]}, which deletes it even "
            "if it prints an error)")


async def replay_via_shovel(
    connection: Connection, mgmt: ManagementClient, settings: Settings, queue: str,
    opts: ReplayOptions, progress: ProgressFn | None = None,
    publish_connection: Connection | None = None, required: bool = True,
) -> ReplayResult | None:
    """Replay the whole DLQ with a shovel underneath (see the module doc). The caller has
    run :func:`sweep` and checked that no other replay shovel moves it
    (:func:`ensure_not_busy`; the :class:`~queuewatch.dlq.DeadLetterQueue` does both
    before every destructive action).

    ``required=False`` (the automatic choice): return None instead of raising when the
    shovel does not fit or cannot be set up (no management API, no rights, no shovel
    plugin), before anything moved; the caller then replays message by message."""
    start = time.monotonic()
    vhost = settings.effective_vhost
    try:
        plan = await check_applicable(connection, mgmt, vhost, queue, opts,
                                      0.0 if required else MIN_SHARE)
    except QueuewatchError:
        if required:
            raise
        return None
    dest, total = plan.dest, plan.total
    if total == 0:
        return ReplayResult(queue, False, 0, 0, 0, via="shovel")
    name = REPLAY_SHOVEL_PREFIX + uuid.uuid4().hex[:12]
    split, _held = exchange_names(name)
    value = definition(vhost, queue, plan.prefetch(), dest_exchange=split,
                       dest_exchange_key=dest)
    moved = Moved()
    stopped: str | None = None
    lost = False
    look = True
    back = _Back(plan.held_apart)
    try:
        await declare(connection, dest, name, opts,
                      await declare_held(connection, name, queue) if back.apart else queue)
        try:
            await mgmt.put_shovel(vhost, name, value)
        except QueuewatchError as exc:
            if required:
                raise
            log.info("replay via a shovel not possible (%s): replaying message by message", exc)
            return None
        try:
            await wait_gone(connection, mgmt, vhost, name, queue, total, progress, moved)
            look = await queue_depth(connection, look_names(name)[1]) > 0
            if not look and not back.apart and plan.dest_limited:
                look = await nacked_back(connection, queue)
            if back.apart:
                back.given_back = await given_back(connection, queue, plan.prefetch())
                if back.given_back and plan.dest_limited:
                    # Refused by a full job queue or given back in doubt: the two look alike
                    # at the head. Look at all of it (a given back one may be replayed twice,
                    # a refused one is reported rather than counted as left out).
                    look, back.look_all = True, True
                back.started = True
                back.count = await move_back(connection, mgmt, vhost, name, queue)
                back.done = True
        except LostSight as exc:
            lost = True
            stopped = (f"{exc}. RabbitMQ's shovel {back.name(name)} goes on moving by itself "
                       "and removes itself when done; until then replay, delete, purge and "
                       f"import of {queue!r} are refused.{back.where(name, queue)} Moved at the "
                       f"last look: {moved.count} of {total}")
        except Stalled as exc:
            stopped = (f"{exc}; the shovel was stopped and what it had not moved stays in the "
                       f"DLQ (run the replay again).{back.where(name, queue)}")
    finally:
        if not lost:
            await _end(connection, mgmt, vhost, name, queue, back)
    if stopped is not None:
        done = await back.replayed(connection, name, moved.count)
        return ReplayResult(queue, False, moved.count, done, done, (),
                            time.monotonic() - start, stopped, via="shovel", total=total)
    # Held back: what the DLQ holds now, dead letters that arrived meanwhile included,
    # unless held apart (then counted exactly, in their own queue).
    held = back.count if back.apart else await queue_depth(connection, queue)
    shovelled = max(total - held, 0)
    if progress is not None:
        progress(shovelled, total)
    rest = ReplayResult(queue, False, 0, 0, 0)
    if held and look:
        # What the broker held back (at the limit, foreign, ...) is at the tail now: the
        # per-message replay replays what it may and reports the rest. Those given back at
        # the head are left alone: most likely replayed already.
        leave = 0 if back.look_all else back.given_back
        rest = await client.replay(connection, queue, replace(opts, leave_head=leave),
                                   None, publish_connection)
    elif held:
        # Held back only because the filter surely does not select them: looked at (by
        # the broker), left in the DLQ, in their order.
        rest = ReplayResult(queue, False, held, 0, 0, total=held)
    return ReplayResult(queue, False, shovelled + rest.scanned, shovelled + rest.matched,
                        shovelled + rest.replayed, rest.skipped, time.monotonic() - start,
                        rest.error, via="shovel", total=total + rest.total - held,
                        in_doubt=rest.in_doubt + back.given_back, dlq_deleted=rest.dlq_deleted,
                        link_lost=rest.link_lost)


async def given_back(connection: Connection, queue: str, prefetch: int) -> int:
    """After a replay's shovel ended by itself: how many dead letters it gave back to the
    head of the DLQ although it may have republished them (at most its prefetch).

    A shovel stops as soon as it has counted as many confirms as the DLQ held when it
    started, and closes its connection at once. Its last acks could be lost then (seen
    under disk load, from classic and quorum DLQs alike: 21 to 181 of the last dead letters
    it had moved, at prefetch 250); so could, with dead letters arriving, originals whose
    confirms came after the arrivals'. The DLQ gives those back, at its head, marked
    redelivered, as it notices the shovel's consumer gone: this waits for that (at most
    :data:`~queuewatch.dlq.channel.RETURN_WAIT`), then counts the redelivered run at the head. An upper bound:
    arrivals the shovel was sent but did not move come back the same way.

    Only after a shovel that held back apart: one holding back into the DLQ it reads is
    sent some of those again and gives them back the same way, so the run says nothing
    there."""
    if await once_fewer_consumers(connection, queue) == 0:
        return 0
    page = await peek(connection, queue, 0, prefetch)
    return sum(1 for _ in takewhile(lambda d: d.redelivered, page.items))


class _Back:
    """Where a replay holds dead letters back (:attr:`Plan.held_apart`), and how far the
    move back to the DLQ got."""

    def __init__(self, apart: bool) -> None:
        self.apart = apart
        self.started = False
        """The second shovel (held back, to the DLQ) was created, or about to be."""
        self.done = False
        """It moved everything back and the held queue is gone."""
        self.count = 0
        """How many it moved back (once done)."""
        self.given_back = 0
        """Dead letters the first shovel gave back to the DLQ's head after it had republished
        them, or may have (see :func:`given_back`)."""
        self.look_all = False
        """The per-message pass looks at the given back head too (see :func:`nacked_back`)."""

    def name(self, shovel: str) -> str:
        """The shovel that goes on by itself when the replay loses sight of the broker."""
        return back_name(shovel) if self.started else shovel

    def where(self, shovel: str, queue: str) -> str:
        """Where what was held back is, for a replay that stopped early."""
        if not self.apart:
            return ""
        return (f" What was held back waits in queue {held_queue(shovel)!r} for its way back "
                f"to {queue!r} (a shovel started now, or the next shovel replay or destructive "
                "action on a DLQ of this vhost)")

    async def replayed(self, connection: Connection, shovel: str, gone: int) -> int:
        """Of ``gone`` dead letters that left the DLQ, those replayed (not held back)."""
        if not self.apart or self.done:
            return gone
        try:
            return max(gone - await queue_depth(connection, held_queue(shovel)), 0)
        except QueuewatchError:
            return gone


async def _end(connection: Connection, mgmt: ManagementClient, vhost: str, shovel: str,
               queue: str, back: _Back) -> None:
    """After the replay's shovel, however it ended: delete it (a running shovel deleted
    gives back what it has not acked), start moving what it held back apart to the DLQ if
    that had not started, and delete the exchanges once nothing is held back any more (else
    the next :func:`sweep` does)."""
    try:
        await mgmt.delete_shovel(vhost, shovel)
    except QueuewatchError as exc:  # it still ends by itself (src-delete-after)
        log.warning("could not delete replay shovel %s: %s", shovel, exc)
        return
    if back.apart and not back.started:
        try:
            back.started = True
            if await start_back(connection, mgmt, vhost, shovel, queue):
                return  # the shovel moving it back ends by itself; the next sweep cleans up
        except QueuewatchError as exc:
            log.warning("what replay %s held back waits in queue %s: %s", shovel,
                        held_queue(shovel), exc)
            return
    if back.apart and not back.done:
        return  # moving back by itself; the next sweep cleans up
    try:
        await drop(connection, shovel)
    except (wire.AMQPError, ConnectionError, QueuewatchError):
        pass  # swept by the next shovel replay
