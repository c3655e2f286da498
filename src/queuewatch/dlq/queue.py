"""``DeadLetterQueue``: the one object the CLI and the TUI call for everything DLQ.

Destructive methods check read-only mode first (before touching the broker), then act,
then append to the audit log, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from queuewatch.audit import AuditLog, Outcome, require_writable
from queuewatch.broker.connect import connect
from queuewatch.broker.management import ManagementClient
from queuewatch.broker.wire import Connection
from queuewatch.config import Settings
from queuewatch.dlq import exportfile, held, kinds, ops, peek, replay, split, transfer
from queuewatch.dlq.channel import close_quietly, queue_counts, queue_depth
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.held import MovedBack
from queuewatch.dlq.importlog import ImportLog
from queuewatch.dlq.kinds import Action, QueueKind
from queuewatch.dlq.model import DeadLetter, Route
from queuewatch.dlq.peek import Page, ProgressFn
from queuewatch.dlq.replay import DEFAULT_MAX_REPLAYS, DEFAULT_WINDOW, ReplayOptions, ReplayResult
from queuewatch.dlq.shovel import ReplayInProgress, ensure_not_busy, replay_via_shovel, sweep
from queuewatch.dlq.targets import DropsHead, move_refusal
from queuewatch.errors import ConfigError, NotFound, QueuewatchError
from queuewatch.events import model as ev
from queuewatch.events.model import Source, line
from queuewatch.events.recorder import record_once
from queuewatch.topology import DLQ_SUFFIX

AUTO_SHOVEL_MIN = 1000
"""Fewest dead letters for which a plain replay takes the shovel by itself. Below it the
per-message replay is quick anyway, and what it does not replay keeps its position."""


#: A queue that shows consumers is checked again this often, CONSUMER_GONE_PAUSE s apart
#: (3 s: under load the broker listed our own just-closed read for over 1 s),
#: before a read is refused.
CONSUMER_GONE_CHECKS = 15
CONSUMER_GONE_PAUSE = 0.2

class QueueHasConsumers(QueuewatchError):
    """The queue has consumers: it looks like a live job queue, not a DLQ. Reading it
    (consume, then put back) would take its messages from them for a moment and mark them
    redelivered; refused unless forced."""

    def __init__(self, queue: str, consumers: int) -> None:
        self.queue, self.consumers = queue, consumers
        super().__init__(
            f"{queue!r} has {consumers} consumer{'s' if consumers != 1 else ''}: it looks like "
            "a live queue, not a dead-letter queue, and reading it would take its messages "
            "from its consumers for a moment (and mark them redelivered); --force-read reads "
            "it anyway")


def dlq_name(queue: str) -> str:
    """``jobs`` -> ``jobs.dlq``; a name already ending in ``.dlq`` (or any other) is kept
    only if it ends with the suffix."""
    return queue if queue.endswith(DLQ_SUFFIX) else queue + DLQ_SUFFIX


class DeadLetterQueue:
    """One DLQ on one vhost. ``queue`` is the DLQ's own name (e.g. ``jobs.dlq``) or any
    queue holding dead letters (a Celery/pika service's DLQ)."""

    def __init__(
        self, connection: Connection, mgmt: ManagementClient | None, settings: Settings,
        queue: str, audit: AuditLog | None = None,
        publish_connection: Connection | None = None, force: bool = False,
    ) -> None:
        """``publish_connection``: used for republishing (replay, import); by default a
        second connection is opened from ``settings`` for the duration of the action.
        ``force``: read, replay and delete even when the queue has consumers (refused
        otherwise: see :class:`QueueHasConsumers`)."""
        self.force = force
        self.connection = connection
        self.mgmt = mgmt
        self.settings = settings
        self.queue = queue
        self.audit = audit or AuditLog.from_settings(settings)
        self.publish_connection = publish_connection
        self._queue_kind: QueueKind | None = None
        #: What the sweep before this object's destructive actions moved back (dead letters
        #: that interrupted shovel replays held back, of this DLQ or another of the vhost).
        self.moved_back: list[MovedBack] = []

    async def kind(self) -> QueueKind:
        """The queue's type and delivery limit (looked up once: see :mod:`.kinds`)."""
        if self._queue_kind is None:
            self._queue_kind = await kinds.resolve(
                self.queue, self.settings.effective_vhost, self._management,
                lambda: connect(self.settings))
        return self._queue_kind

    async def _quorum(self) -> bool:
        """Whether this DLQ is a quorum queue (a replay then moves to a new consumer only
        once the current one is starved, to keep DLQ order: see :mod:`queuewatch.dlq.readers`)."""
        return (await self.kind()).type == "quorum"

    async def _allowed(self, action: Action, vouch: bool = False) -> None:
        """Refuse (:class:`~queuewatch.dlq.kinds.QueueKindRefused`) what the queue's type
        does not allow, and (:class:`QueueHasConsumers`) consuming a queue others consume,
        before anything is read. ``vouch``: a length limit that cannot be read is taken as
        none dropping the head (``--skip-limit-check``)."""
        kind = await self.kind()
        (kind.vouched() if vouch else kind).require(action)
        if action in kinds.CONSUMING and not self.force:
            _ready, consumers = await queue_counts(self.connection, self.queue)
            for _ in range(CONSUMER_GONE_CHECKS):
                # Our own read a moment ago (list, then export) may still be counted: the
                # broker drops a closed channel's consumer a little after the close.
                if not consumers:
                    break
                await asyncio.sleep(CONSUMER_GONE_PAUSE)
                _ready, consumers = await queue_counts(self.connection, self.queue)
            if consumers and not await self._our_shovel_on_it():
                raise QueueHasConsumers(self.queue, consumers)

    @property
    def target(self) -> dict[str, Any]:
        return {"vhost": self.settings.effective_vhost, "queue": self.queue}

    # -- reading (never changes the queue) ---------------------------------------------
    async def depth(self) -> int:
        return await queue_depth(self.connection, self.queue)

    async def peek(self, offset: int = 0, limit: int = 50) -> Page:
        await self._allowed("read")
        return await peek.peek(self.connection, self.queue, offset, limit)

    async def held_elsewhere(self) -> list[tuple[str, int]]:
        """Dead letters of this DLQ that a shovel replay (in progress, or interrupted)
        holds back in a queue of its own: (queue, how many). They return to the DLQ's tail
        when it ends, or with the next replay or destructive action
        (:mod:`queuewatch.dlq.held`). Empty without a management API."""
        try:
            async with self._management() as mgmt:
                return await held.held_for(self.connection, mgmt,
                                           self.settings.effective_vhost, self.queue)
        except QueuewatchError:
            return []

    async def find(
        self, flt: DeadLetterFilter, limit: int | None = None, max_results: int = 1000
    ) -> list[DeadLetter]:
        await self._allowed("read")
        return await peek.find(self.connection, self.queue, flt, limit, max_results)

    async def get(self, job_id: str) -> DeadLetter | None:
        found = await self.find(DeadLetterFilter.for_jobs([job_id]), max_results=1)
        return found[0] if found else None

    async def export(self, path: Path | str, progress: ProgressFn | None = None,
                     flt: DeadLetterFilter | None = None) -> int:
        """Write the dead letters ``flt`` selects (default: all) to ``path`` (JSONL)."""
        await self._allowed("read")
        if str(path) == "":
            raise ConfigError("the export file name is empty")
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            out = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
        with out:
            return await exportfile.export(self.connection, self.queue, out, progress,
                                           None if flt is None or flt.is_empty else flt)

    async def _replay_via_shovel(
        self, opts: ReplayOptions, progress: ProgressFn | None, required: bool
    ) -> ReplayResult | None:
        async with self._publisher() as pub, self._management() as mgmt:
            return await replay_via_shovel(self.connection, mgmt, self.settings, self.queue,
                                           opts, progress, pub, required)

    @asynccontextmanager
    async def _management(self) -> AsyncIterator[ManagementClient]:
        """The management client given, or one of our own for the call."""
        if self.mgmt is not None:
            yield self.mgmt
            return
        async with ManagementClient(self.settings) as mgmt:
            yield mgmt

    async def _shovel_worth_it(self, opts: ReplayOptions) -> bool:
        """The automatic choice: a bulk replay (no filter, or one the broker can apply:
        error type, reason) of a DLQ big enough to gain from it."""
        if not split.broker_can_filter(opts.flt) or opts.dry_run or opts.rate \
                or opts.limit is not None:
            return False
        return await self.depth() >= AUTO_SHOVEL_MIN

    @asynccontextmanager
    async def _publisher(self) -> AsyncIterator[Connection]:
        """A connection of its own for republishing (see :func:`replay.replay`)."""
        if self.publish_connection is not None:
            yield self.publish_connection
            return
        conn = await connect(self.settings)
        try:
            yield conn
        finally:
            await close_quietly(conn)

    # -- destructive --------------------------------------------------------------------
    async def _begin(self, action: Action, vouch: bool = False) -> None:
        require_writable(self.settings, action)
        self.audit.check()
        await self._not_being_shovelled(do_sweep=True)
        await self._allowed(action, vouch)

    async def _our_shovel_on_it(self) -> bool:
        """Whether the consumer is the shovel of a replay of ours (reading is allowed
        then; destructive actions are refused with :class:`ReplayInProgress`)."""
        try:
            await self._not_being_shovelled()
        except ReplayInProgress:
            return True
        return False

    async def _not_being_shovelled(self, do_sweep: bool = False) -> None:
        """Refuse while the shovel of a killed replay still moves this DLQ (see
        :func:`~queuewatch.dlq.shovel.ensure_not_busy`). ``sweep`` (destructive actions
        only): first, what killed replays held back in a queue of their own goes back to
        its DLQ (:func:`~queuewatch.dlq.shovel.sweep`). Without a management API, or the
        right to read shovels, there is no shovel of ours to worry about: go on."""
        try:
            async with self._management() as mgmt:
                if do_sweep:
                    with contextlib.suppress(QueuewatchError):  # the busy check still runs
                        self.moved_back += await sweep(self.connection, mgmt,
                                                       self.settings.effective_vhost)
                await ensure_not_busy(mgmt, self.settings.effective_vhost, self.queue)
        except ReplayInProgress:
            raise
        except QueuewatchError:
            return

    async def replay(
        self, flt: DeadLetterFilter | None = None, *, dry_run: bool = False,
        rate: float | None = None, force: bool = False, max_replays: int = DEFAULT_MAX_REPLAYS,
        limit: int | None = None, window: int = DEFAULT_WINDOW, progress: ProgressFn | None = None,
        via_shovel: bool | None = None, skip_limit_check: bool = False,
    ) -> ReplayResult:
        """Send dead letters back to their original route (a dry run changes nothing and
        is allowed in read-only mode).

        ``via_shovel``: True lets a RabbitMQ shovel move them (several times faster; see
        :mod:`queuewatch.dlq.shovel` for where it fits) and raises ``ShovelNotApplicable``
        where it does not; False republishes message by message; None (the default) takes
        the shovel for a bulk replay (no rate or limit, no filter but on error type and
        reason, and then enough of the head matching; at least :data:`AUTO_SHOVEL_MIN` dead
        letters) where it fits, else message by message. ``skip_limit_check``: a route whose
        queues' length limits cannot be read is replayed, not kept ``unchecked`` (counted
        in ``unchecked_sent``; see :class:`~queuewatch.dlq.targets.DropsHead`)."""
        flt = flt or DeadLetterFilter()
        if dry_run:
            await self._allowed("read")
        else:
            await self._begin("replay")
        replayed: list[str] = []
        source = Source("replay", name=self.settings.credentials[0])

        def note(dl: DeadLetter, route: Route, sent_ms: int) -> None:  # the job events' "replayed"
            if dl.job_id:
                target = dl.death.original_queue or route.routing_key
                replayed.append(line(ev.REPLAYED, dl.job_id, target, 0, source,
                                     {"to": route.describe(), "dlq": self.queue}, sent_ms))

        drops = DropsHead(self._management, self.settings.effective_vhost, skip_limit_check)
        opts = ReplayOptions(flt=flt, dry_run=dry_run, rate=rate, force=force,
                             max_replays=max_replays, limit=limit, window=window,
                             user=self.settings.credentials[0],
                             on_replayed=None if dry_run else note,
                             quorum=await self._quorum(), drops=drops)
        try:
            shovelled = None
            if via_shovel or (via_shovel is None and await self._shovel_worth_it(opts)):
                shovelled = await self._replay_via_shovel(opts, progress, bool(via_shovel))
            if shovelled is not None:
                result = shovelled
                if replayed:  # what the per-message pass after the shovel republished
                    async with self._publisher() as pub:
                        await record_once(pub, self.settings, list(replayed))
            elif dry_run:
                result = await replay.replay(self.connection, self.queue, opts, progress)
            else:
                async with self._publisher() as pub:
                    result = await replay.replay(self.connection, self.queue, opts, progress, pub)
                    await record_once(pub, self.settings, list(replayed))
        except QueuewatchError as exc:
            if not dry_run:
                self._record("replay", "error", 0, flt, str(exc))
            raise
        result = replace(result, unchecked_sent=drops.vouched)
        if not dry_run:
            self._record("replay", result.outcome, result.replayed, flt, _detail(result),
                         extra={"force": force, "rate": rate, "max_replays": max_replays,
                                "via": result.via, **_vouched(skip_limit_check)})
        return result

    async def move(
        self, to_queue: str, flt: DeadLetterFilter | None = None, *, dry_run: bool = False,
        limit: int | None = None, progress: ProgressFn | None = None,
        skip_limit_check: bool = False,
    ) -> ReplayResult:
        """Move the messages ``flt`` selects (default: every one) to the queue ``to_queue``
        (default exchange), unchanged: the replay's hop, publish with confirm and
        ``mandatory`` then ack, so nothing is lost; what cannot go (``to_queue`` missing:
        unroutable; full: refused) stays here and is reported. Audited as ``move``.
        ``skip_limit_check``: move into ``to_queue`` even when its length limit cannot be
        read (one that drops the head is still refused)."""
        flt = flt or DeadLetterFilter()
        if to_queue == self.queue:
            raise ConfigError(f"cannot move {self.queue!r} to itself")
        opts = ReplayOptions(flt=flt, dry_run=dry_run, limit=limit,
                             user=self.settings.credentials[0], to=Route("", to_queue),
                             quorum=await self._quorum())
        if dry_run:
            await self._allowed("read")
            return await replay.replay(self.connection, self.queue, opts, progress)
        require_writable(self.settings, "move")
        self.audit.check()
        await self._not_being_shovelled(do_sweep=True)
        await self._allowed("replay")
        await self._target_keeps_all(to_queue, skip_limit_check)
        extra = {"to": to_queue, **_vouched(skip_limit_check)}
        try:
            async with self._publisher() as pub:
                result = await replay.replay(self.connection, self.queue, opts, progress, pub)
        except QueuewatchError as exc:
            self._record("move", "error", 0, flt, str(exc), extra=extra)
            raise
        self._record("move", result.outcome, result.replayed, flt, _detail(result), extra=extra)
        return result

    async def _target_keeps_all(self, to_queue: str, vouch: bool) -> None:
        """Refuse a move into a queue that makes room by dropping its oldest messages, or
        whose limit cannot be read unless ``vouch`` (:func:`~.targets.move_refusal`; a
        missing queue is left to the move, which keeps and reports what is unroutable)."""
        try:
            target = await kinds.resolve(to_queue, self.settings.effective_vhost,
                                         self._management, lambda: connect(self.settings))
        except NotFound:
            return
        why = move_refusal(to_queue, target.vouched() if vouch else target)
        if why is not None:
            raise kinds.QueueKindRefused(why)

    async def delete(self, job_ids: Iterable[str]) -> list[str | None]:
        flt = DeadLetterFilter.for_jobs(job_ids)
        await self._begin("delete")
        try:
            removed = await ops.delete(self.connection, self.queue, flt,
                                       quorum=await self._quorum())
        except QueuewatchError as exc:
            self._record("delete", "error", 0, flt, str(exc))
            raise
        missing = len(flt.job_ids - {r for r in removed if r})
        self._record("delete", "partial" if missing else "ok", len(removed), flt,
                     f"{missing} job ids not found" if missing else "")
        return removed

    async def purge(self) -> int:
        await self._begin("purge")
        try:
            count = await ops.purge(self.connection, self.queue)
        except QueuewatchError as exc:
            self._record("purge", "error", 0, None, str(exc))
            raise
        self._record("purge", "ok", count, None, "")
        return count

    async def import_(
        self, path: Path | str, progress: ProgressFn | None = None, skip: int = 0,
        again: bool = False, skip_limit_check: bool = False,
    ) -> transfer.ImportResult:
        """Publish the messages of an export file into this queue (confirmed). Lines that
        cannot be published are reported in the result and the rest imported; lines an
        earlier import of the same file put into this queue are not published again
        (``again=True``: they are). ``skip``: leave out the first ``skip`` messages.
        :class:`~queuewatch.dlq.transfer.ImportStopped` when it stops early.
        ``skip_limit_check``: import even when the queue's length limit cannot be read."""
        await self._begin("import", vouch=skip_limit_check)
        path = Path(path)
        extra = {"file": str(path), **({"skip": skip} if skip else {}),
                 **({"again": True} if again else {}), **_vouched(skip_limit_check)}
        try:
            try:
                log = ImportLog.open(self.settings.state_dir, self.settings.effective_vhost,
                                     self.queue, path, again)
            except OSError as exc:
                raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
            result = await transfer.import_(self.connection, self.queue, path, progress, skip,
                                            log=log)
        except transfer.ImportStopped as exc:
            r = exc.result
            self._record("import", "partial" if r.confirmed else "error", r.confirmed, None,
                         f"{r.error}; in doubt {r.in_doubt}; resume with skip={r.resume_at}",
                         extra=extra)
            raise
        except QueuewatchError as exc:
            self._record("import", "error", 0, None, str(exc), extra=extra)
            raise
        detail = ", ".join(f"message {r.line}: {r.why}" for r in result.unpublishable[:20])
        if result.earlier:
            detail = f"{result.earlier} already imported before" + (f"; {detail}" if detail else "")
        self._record("import", result.outcome, result.confirmed, None, detail, extra=extra)
        return result

    def _record(
        self, action: str, outcome: Outcome, count: int, flt: DeadLetterFilter | None,
        detail: str, extra: dict[str, Any] | None = None,
    ) -> None:
        target = {**self.target, **(extra or {})}
        self.audit.record(action, target, outcome, count=count,
                          filter=flt.describe() if flt else None, detail=detail)


def _detail(result: ReplayResult) -> str:
    """A replay's or move's audit detail: how many were kept and why, how many were sent
    without their length limit read (``--skip-limit-check``), why it stopped early."""
    parts = [f"{why}={result.count(why)}" for why in replay.KEPT_REASONS if result.count(why)]
    if result.unchecked_sent:
        parts.append(f"sent-unchecked={result.unchecked_sent} (--skip-limit-check)")
    detail = ", ".join(parts)
    return f"{detail}; {result.error}" if detail and result.error else detail or result.error or ""


def _vouched(skip_limit_check: bool) -> dict[str, Any]:
    """The audit entry's mark of an action the operator vouched for: a length limit that
    could not be read was taken as none dropping the head (``--skip-limit-check``)."""
    return {"skip_limit_check": True} if skip_limit_check else {}
