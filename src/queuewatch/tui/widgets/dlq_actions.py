"""The DLQ browser's actions: replay, delete, export. Each replay or delete runs a dry run
first; the confirmation says how many, which, and where they go; nothing moves before ``y``."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.widgets import ProgressBar

from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import DeadLetter
from queuewatch.monitor.model import plural as counted
from queuewatch.tui.screens.dialogs import ConfirmScreen
from queuewatch.tui.widgets.dlq_causes import CauseTable

#: verb -> (past tense, where the messages go)
VERBS = {"replay": "replayed", "delete": "deleted"}


def plural(n: int, noun: str = "dead letter") -> str:
    return counted(n, noun)


def done_of(verb: str, done: int, count: int, noun: str = "dead letter") -> str:
    """``replayed 3 of 5 dead letters``; more done than the dry run counted (some arrived
    between the confirmation and the action) is said as such, not as "13 of 12"."""
    if done <= count:
        return f"{verb} {done} of {plural(count, noun)}"
    return f"{verb} {plural(done, noun)} ({count} counted when confirmed, {done - count} came since)"


def parse_filter(text: str) -> DeadLetterFilter:
    """``type:ValueError reason:failed some text`` -> a :class:`DeadLetterFilter`."""
    error_type = reason = None
    words = []
    for word in text.split():
        if word.startswith(("type:", "error:")):
            error_type = word.split(":", 1)[1] or None
        elif word.startswith("reason:"):
            reason = word.split(":", 1)[1].replace("_", " ") or None
        else:
            words.append(word)
    return DeadLetterFilter(error_type=error_type, reason=reason, text=" ".join(words) or None)


def dead_letter_key(dl: DeadLetter) -> str:
    return dl.job_id or dl.message_id or f"#{dl.position}"


def describe_filter(flt: DeadLetterFilter) -> str:
    """The filter in words (never a Python dict)."""
    parts = []
    if flt.job_ids:
        ids = sorted(flt.job_ids)
        parts.append("job " + ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else ""))
    if flt.error_type:
        parts.append(f"error type {flt.error_type}")
    if flt.reason:
        parts.append(f"reason '{flt.reason}'")
    if flt.text:
        parts.append(f"text '{flt.text}'")
    return "; ".join(parts) or "every dead letter"


def destinations(letters: Iterable[DeadLetter]) -> str:
    """Where a replay sends ``letters``: ``orders (3), emails (1)``."""
    where: Counter[str] = Counter()
    for dl in letters:
        route = dl.death.route
        if route is None:
            where["(no known route: kept in the DLQ)"] += 1
        elif route.exchange == "":
            where[f"queue {route.routing_key}"] += 1
        else:
            where[f"exchange {route.exchange} (key {route.routing_key or '-'})"] += 1
    return ", ".join(f"{k} ({n})" for k, n in where.most_common(4)) or "their original queues"


class DlqActions:
    """Mixed into :class:`~queuewatch.tui.widgets.dlq_view.DlqView`."""

    if TYPE_CHECKING:  # provided by the view
        dlq: str | None
        letters: dict[str, DeadLetter]
        marked: set[str]
        _loading: bool
        _busy: bool
        _reload_pending: bool
        source: Any
        app: Any

        @property
        def by_cause(self) -> bool: ...

        def reload(self) -> None: ...
        def query_one(self, selector: Any, expect_type: Any = None) -> Any: ...

    @work(group="dlq-action", exclusive=True, exit_on_error=False)
    async def start_action(self, verb: str, dlq: str, flt: DeadLetterFilter, which: str) -> None:
        while self._loading:  # let a running read finish: it holds messages for a moment
            await asyncio.sleep(0.05)
        self._busy = True
        try:
            await self._act(verb, dlq, flt, which)
        finally:
            self._busy = False
            self._reload_pending = False
            self.query_one(ProgressBar).remove_class("visible")
            self.reload()

    async def _act(self, verb: str, dlq: str, flt: DeadLetterFilter, which: str) -> None:
        count = ((await self.source.replay_dlq(dlq, flt, dry_run=True)).count
                 if verb == "replay" else await self.source.delete_dlq(dlq, flt, dry_run=True))
        if count == 0:
            self.app.notify(f"nothing to {verb}: no dead letter {which}", severity="warning")
            return
        shown = [dl for dl in self.letters.values() if flt.matches(dl)]
        if verb == "replay":
            where = f"They go back to {destinations(shown)}"
            if len(shown) < count:
                where += f" (of the {len(shown)} shown)"
            where += "; the DLQ keeps any that cannot be routed."
        else:
            where = "They are removed for good (written to the audit log); export first to keep a copy."
        ok = await self.app.push_screen_wait(ConfirmScreen(
            f"{verb.capitalize()} {plural(count)} from {dlq}?",
            f"{plural(count)} {which} ({describe_filter(flt)}), counted by a dry run.\n{where}",
            confirm_label=verb.capitalize(), keep_label="Keep them",
        ))
        if not ok:
            return
        bar = self.query_one(ProgressBar)
        bar.add_class("visible")
        bar.update(total=count, progress=0)

        def progress(done: int) -> None:
            self.app.call_later(bar.update, progress=done)

        in_doubt = 0
        if verb == "replay":
            replayed = await self.source.replay_dlq(dlq, flt, dry_run=False, progress=progress)
            done, in_doubt = replayed.count, replayed.in_doubt
            for said in replayed.moved_back:
                self.app.notify(said[0].upper() + said[1:], severity="warning", timeout=15)
        else:
            done = await self.source.delete_dlq(dlq, flt, dry_run=False)
        self.marked.clear()
        doubt = (f"; in doubt: up to {in_doubt} may be both back in their queue and still in "
                 "the DLQ (duplicates, never lost)") if in_doubt else ""
        self.app.notify(f"{done_of(VERBS[verb], done, count)} from {dlq}{doubt}",
                        severity="information" if done >= count and not in_doubt
                        else "warning")

    @work(group="dlq-action", exclusive=True, exit_on_error=False)
    async def action_export(self) -> None:
        """``e``: every dead letter of the DLQ to ``./<dlq>-export.jsonl``; in the cause
        grouping (``b``), every one of the highlighted cause, after a confirmation."""
        if not self.dlq:
            return
        dlq, flt, what = self.dlq, DeadLetterFilter(), "every dead letter"
        path = Path.cwd() / f"{dlq}-export.jsonl"
        if self.by_cause:
            cause = self.query_one(CauseTable).selected
            if cause is None:
                return
            flt, what = DeadLetterFilter(cause=cause.label), f"cause '{cause.label}'"
            path = Path.cwd() / f"{dlq}-{cause_slug(cause.label)}-export.jsonl"
            if not await self.app.push_screen_wait(ConfirmScreen(
                f"Export {plural(cause.count)} of this cause to {path.name}?",
                f"Cause: {cause.label}\n{plural(cause.count)} of it among the {len(self.letters)} "
                f"read; the export reads the whole of {dlq} and writes every dead letter of "
                f"this cause to {path} (same format as queuewatch dlq export --cause). Nothing "
                "is removed.", confirm_label="Export", keep_label="Back",
            )):
                return
        while self._loading:
            await asyncio.sleep(0.05)
        self._busy = True
        try:
            n = await self.source.export_dlq(dlq, flt, path)
        finally:
            self._busy = False
        of = f"{dlq}" if flt.is_empty else f"{dlq} ({what})"
        self.app.notify(f"exported {plural(n)} of {of} to {path} (nothing removed)")


def cause_slug(label: str) -> str:
    """A file-name part for a cause: ``ValueError-bad_input_n``."""
    return re.sub(r"[^\w.-]+", "_", label.replace(": ", "-")).strip("_")[:48] or "cause"
