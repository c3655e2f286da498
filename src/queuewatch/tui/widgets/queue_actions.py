"""Actions on any queue, from the Queues view (1) and the queue detail: peek, purge, move,
pause/resume and a test job. Each calls the same core function as the CLI
(``queuewatch queues peek|purge|move|pause|resume|publish``): the DLQ core reads, purges and
moves (publish with confirm, then ack); the operator pauses and sends the test job through
the producer. Destructive ones are refused in read-only mode with one line, ask first where
they remove or move messages, and are written to the audit log by the core. Failures are
shown by :class:`~queuewatch.tui.failures.ReportsFailures` on the node mixing this in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work
from textual.binding import Binding
from textual.widgets import ProgressBar

from queuewatch.dlq import ReplayResult
from queuewatch.dlq.queue import QueueHasConsumers
from queuewatch.errors import ReadOnlyError
from queuewatch.tui.screens.dialogs import ConfirmScreen, PickScreen
from queuewatch.tui.screens.peek import PeekScreen
from queuewatch.tui.widgets.dlq_actions import done_of, plural

#: How many messages a peek reads.
PEEK_QUEUE_LIMIT = 100
#: Keys of the queue actions (the Queues view and the queue detail both take them).
QUEUE_ACTION_BINDINGS = [
    Binding("p", "peek_queue", "Peek"),
    Binding("X", "purge_queue", "Purge"),
    Binding("m", "move_queue", "Move"),
    Binding("P", "pause_queue", "Pause"),
    Binding("t", "test_job", "Test job", show=False),
]
#: Refused in read-only mode (peek only reads: it is allowed, as the DLQ browser's reads).
CHANGES = ("purge", "move", "pause", "publish_test")


def moved_text(result: ReplayResult, queue: str, to: str, count: int) -> str:
    """``moved 3 of 3 messages from a to b`` + what was held back and what is in doubt."""
    text = f"{done_of('moved', result.replayed, count, 'message')} from {queue} to {to}"
    kept = Counter(s.why for s in result.skipped if s.why != "stopped")
    if kept:
        text += "; held back in " + queue + ": " + ", ".join(
            f"{n} {why}" for why, n in kept.most_common())
    if result.in_doubt:
        text += f"; in doubt {result.in_doubt} (may be in both queues: duplicates, never lost)"
    if result.error:
        text += f"; stopped: {result.error}"
    return text


class QueueActions:
    """Mixed into a node that has ``source``, ``read_only``, ``clock`` and names its queue
    in :meth:`action_queue`."""

    if TYPE_CHECKING:
        source: Any
        read_only: bool
        app: Any
        clock: Callable[[], float]

        query: Any

    def action_queue(self) -> str | None:
        raise NotImplementedError

    def _refused(self, action: str) -> bool:
        if self.read_only:
            self.app.notify(str(ReadOnlyError(action)), severity="warning")
        return self.read_only

    async def _confirm(self, title: str, detail: str, yes: str, no: str = "Keep them") -> bool:
        return bool(await self.app.push_screen_wait(
            ConfirmScreen(title, detail, confirm_label=yes, keep_label=no)))

    async def _force_ok(self, exc: QueueHasConsumers, verb: str) -> bool:
        return await self._confirm(
            f"{exc.queue} has {plural(exc.consumers, 'consumer')}: {verb} anyway?",
            f"{exc.queue} looks like a live queue. Reading it takes its messages from its "
            f"{plural(exc.consumers, 'consumer')} for a moment (they get them back, marked "
            "redelivered).", yes=f"{verb.capitalize()} anyway", no="Leave it")

    # -- peek ----------------------------------------------------------------------------
    def action_peek_queue(self) -> None:
        queue = self.action_queue()
        if queue:
            self.peek_queue(queue)

    @work(group="queue-peek", exclusive=True, exit_on_error=False)
    async def peek_queue(self, queue: str) -> None:
        forced = False
        try:
            page = await self.source.peek_queue(queue, PEEK_QUEUE_LIMIT)
        except QueueHasConsumers as exc:
            if not await self._force_ok(exc, "read"):
                return
            forced = True
            page = await self.source.peek_queue(queue, PEEK_QUEUE_LIMIT, force=True)
        await self.app.push_screen(PeekScreen(page, self.clock, forced))

    # -- purge ---------------------------------------------------------------------------
    def action_purge_queue(self) -> None:
        queue = self.action_queue()
        if queue and not self._refused("purge"):
            self.purge_queue(queue)

    @work(group="queue-purge", exclusive=True, exit_on_error=False)
    async def purge_queue(self, queue: str) -> None:
        n = await self.source.queue_depth(queue)
        if n == 0:
            self.app.notify(f"nothing to purge: {queue} has no ready messages",
                            severity="warning")
            return
        if not await self._confirm(
                f"Purge {plural(n, 'message')} from {queue}?",
                f"Every ready message of {queue} ({n} now) is removed for good (written to the "
                "audit log). Messages its consumers hold unacked stay.", yes="Purge"):
            return
        done = await self.source.purge_queue(queue)
        self.app.notify(f"purged {plural(done, 'message')} from {queue}")

    # -- move ----------------------------------------------------------------------------
    def action_move_queue(self) -> None:
        queue = self.action_queue()
        if queue and not self._refused("move"):
            self.move_queue(queue)

    @work(group="queue-move", exclusive=True, exit_on_error=False)
    async def move_queue(self, queue: str) -> None:
        snapshot = getattr(self.app, "snapshot", None)
        names = sorted(q.name for q in (snapshot.queues if snapshot else ())
                       if q.name != queue and not q.name.startswith(("queuewatch.", "amq.")))
        to = await self.app.push_screen_wait(PickScreen(
            f"Move the messages of {queue} to (type to filter)", names or ["(none)"]))
        if not to or to not in names:
            return
        n = await self.source.queue_depth(queue)
        if n == 0:
            self.app.notify(f"nothing to move: {queue} has no ready messages", severity="warning")
            return
        if not await self._confirm(
                f"Move {plural(n, 'message')} from {queue} to {to}?",
                f"{plural(n, 'message')} go to the queue {to}, unchanged: each is published "
                f"there with a confirm, then removed from {queue}. What {to} refuses (full, "
                f"missing) stays in {queue}. Written to the audit log.", yes="Move"):
            return
        found = self.query("#move-progress")
        bar: ProgressBar | None = found.first(ProgressBar) if found else None

        def progress(done: int) -> None:
            if bar is not None:
                self.app.call_later(bar.update, progress=done)

        if bar is not None:
            bar.update(total=n, progress=0)
            bar.add_class("visible")
        try:
            try:
                result = await self.source.move_queue(queue, to, dry_run=False, progress=progress)
            except QueueHasConsumers as exc:
                if not await self._force_ok(exc, "move"):
                    return
                result = await self.source.move_queue(queue, to, dry_run=False, force=True,
                                                      progress=progress)
        finally:
            if bar is not None:
                bar.remove_class("visible")
        complete = result.replayed >= n and not result.skipped and not result.error
        self.app.notify(moved_text(result, queue, to, n),
                        severity="information" if complete else "warning")

    # -- pause / resume, test job ----------------------------------------------------------
    def action_pause_queue(self) -> None:
        queue = self.action_queue()
        if queue and not self._refused("pause"):
            snapshot = getattr(self.app, "snapshot", None)
            q = snapshot.queue(queue) if snapshot is not None else None
            self.pause_queue(queue, not (q is not None and q.paused))

    @work(group="queue-pause", exclusive=True, exit_on_error=False)
    async def pause_queue(self, queue: str, paused: bool) -> None:
        await self.source.pause_queue(queue, paused)
        self.app.notify(f"paused {queue}: workers take no new jobs from it (running ones finish)"
                        if paused else f"resumed {queue}: workers consume it again")

    def action_test_job(self) -> None:
        queue = self.action_queue()
        if queue and not self._refused("publish_test"):
            self.publish_test_job(queue)

    @work(group="queue-test-job", exclusive=True, exit_on_error=False)
    async def publish_test_job(self, queue: str) -> None:
        job_id = await self.source.publish_test_job(queue)
        self.app.notify(f"published test job {job_id} to {queue} (o shows a job's timeline)")
