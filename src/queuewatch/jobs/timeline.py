"""A job's status and timeline as lines of text (the CLI's ``jobs show`` and the console's
job view both print these)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from queuewatch.events import model as ev
from queuewatch.events.model import Event
from queuewatch.jobs.state import JobState, JobStatus


def when(ms: int | None) -> str:
    """An epoch-ms time as ``2026-11-29 12:03:04.123Z`` (or ``-``)."""
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms (out of range)"


def _in(ms: int | None, now: float | None = None) -> str:
    if ms is None:
        return "-"
    delta = ms / 1000 - (time.time() if now is None else now)
    word = "in" if delta >= 0 else "overdue by"
    seconds = abs(delta)
    if seconds < 90:
        return f"{word} {seconds:.0f}s"
    if seconds < 5400:
        return f"{word} {seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{word} {seconds / 3600:.1f}h"
    return f"{word} {seconds / 86400:.1f}d"


def headline(st: JobStatus) -> str:
    """One line: the state in words."""
    if st.state is JobState.UNKNOWN:
        return (f"job {st.job_id}: unknown (never recorded, or its events are past retention)")
    where = f" on {st.queue!r}" if st.queue else ""
    match st.state:
        case JobState.SCHEDULED:
            detail = f", due {when(st.due_ms)} ({_in(st.due_ms)})"
        case JobState.RUNNING:
            w = st.worker
            detail = (f", attempt {st.attempt}, on {w.name or w.host} (host {w.host}, pid {w.pid})"
                      f" since {when(st.since_ms)}" if w else f", attempt {st.attempt}")
        case JobState.RETRYING:
            detail = (f", attempt {st.attempt} failed ({st.error_type}: {st.error}); "
                      f"next attempt {when(st.due_ms)} ({_in(st.due_ms)})")
        case JobState.SUCCEEDED:
            detail = f" after {st.attempt} attempt(s), at {when(st.since_ms)}"
            if st.result_expired:
                detail += "; its result expired"
            elif st.has_result:
                detail += "; it has a result"
        case JobState.DEAD_LETTERED:
            detail = (f" after attempt {st.attempt} ({st.reason}): {st.error_type}: {st.error}"
                      if st.error_type else f" ({st.reason})")
        case JobState.CANCELLED:
            detail = f" ({st.reason})" if st.reason else ""
        case _:
            detail = ""
    return f"job {st.job_id}: {st.state.value.replace('_', '-')}{where}{detail}"


def _event_line(e: Event) -> str:
    d = e.data
    who = e.source.name or f"{e.source.role} {e.source.host}:{e.source.pid}"
    match e.kind:
        case ev.ACCEPTED:
            text = "accepted"
        case ev.SCHEDULED:
            text = f"scheduled for {when(d.get('due'))}"
        case ev.STARTED:
            text = f"attempt {e.attempt} started" + (" (redelivered)" if d.get("redelivered") else "")
        case ev.ATTEMPT_FAILED:
            text = f"attempt {e.attempt} failed after {_secs(d.get('duration'))}: {d.get('error_type')}: {d.get('error')}"
        case ev.RETRY_SCHEDULED:
            text = f"attempt {d.get('next_attempt')} scheduled for {when(d.get('due'))}"
        case ev.SUCCEEDED if d.get("duplicate_key") is not None:
            text = (f"not run: its idempotency key {d.get('duplicate_key')!r} was done already "
                    "(by another job with that key, or an earlier delivery of this one)")
        case ev.SUCCEEDED:
            text = f"attempt {e.attempt} succeeded after {_secs(d.get('duration'))}"
            if "result" in d:
                text += " (with a result)"
        case ev.DEAD_LETTERED:
            text = f"dead-lettered into {d.get('dlq') or '(no DLQ: dropped)'} ({d.get('reason')})"
        case ev.CANCELLED | ev.SKIPPED:
            text = f"cancelled ({d.get('reason') or 'by operator'})"
        case ev.CANCEL_REQUESTED:
            text = f"cancel requested ({d.get('reason') or 'by operator'})"
        case ev.REPLAYED:
            text = f"replayed from the DLQ into {d.get('to') or e.queue}"
        case _:
            text = e.kind
    return f"  {when(e.at_ms)}  {text}  [{who}]"


def _secs(value: object) -> str:
    return f"{value:.3f}s" if isinstance(value, int | float) else "?"


def render(st: JobStatus, *, tracebacks: bool = False) -> str:
    """The headline, then every event in time order (with tracebacks when asked)."""
    lines = [headline(st)]
    if st.events:
        lines.append("timeline:")
        for e in st.events:
            lines.append(_event_line(e))
            tb = e.data.get("traceback") if tracebacks and e.kind == ev.ATTEMPT_FAILED else None
            if isinstance(tb, str):
                lines.extend("      " + t for t in tb.rstrip().splitlines())
    interrupted = [a for a in st.attempts if a.outcome == "interrupted"]
    if interrupted:
        lines.append(f"{len(interrupted)} attempt(s) interrupted (the worker went away holding "
                     "the job; the broker delivered it again)")
    return "\n".join(lines)
