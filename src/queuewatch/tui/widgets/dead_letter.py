"""One dead letter, rendered for the detail pane: error, death, headers, x-death, body, traceback.

Times are shown as UTC times with their age (never raw epoch milliseconds); the ``x-death``
history as one line per hop, with queuewatch's own delay-level passes summed up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from rich.text import Text

from queuewatch import envelope as env
from queuewatch.dlq.model import DeadLetter, published_ms
from queuewatch.monitor.model import fmt_duration
from queuewatch.topology import is_scheduling_queue
from queuewatch.tui.layout import Column

#: Headers holding epoch milliseconds.
TIME_HEADERS = frozenset({env.H_PUBLISHED_MS, env.H_FIRST_FAILED_MS, env.H_LAST_FAILED_MS,
                          env.H_DEAD_AT_MS})
#: Shown elsewhere in the pane.
SHOWN_ELSEWHERE = frozenset({env.H_TRACEBACK, "x-death", env.H_ERROR_TYPE, env.H_ERROR_MESSAGE})
SOURCES = {"queuewatch": "queuewatch headers", "x-death": "RabbitMQ's x-death header",
           "none": "nothing: no death headers"}


def when(ms: Any, now: float) -> str:
    """``2026-11-29 11:02:03Z (4m10s ago)`` from epoch milliseconds (or a datetime)."""
    if isinstance(ms, dt.datetime):
        seconds = ms.replace(tzinfo=ms.tzinfo or dt.UTC).timestamp()
    else:
        try:
            seconds = float(ms) / 1000.0
        except (TypeError, ValueError):
            return str(ms)
    if not 946684800 <= seconds <= 4102444800:  # 2000..2100: else not a date
        return f"{ms} (not a date)"
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{stamp} ({fmt_duration(max(now - seconds, 0.0))} ago)"


def death_lines(entries: Any, now: float) -> list[str]:
    """``x-death`` as lines: ``3× rejected from orders (exchange '', key orders), last …``;
    passes through queuewatch's delay levels and due queues are summed into one line."""
    lines: list[str] = []
    delay_passes = 0
    for entry in entries if isinstance(entries, list | tuple) else []:
        if not isinstance(entry, Mapping):
            lines.append(str(entry)[:200])
            continue
        queue = _text(entry.get("queue"))
        count = entry.get("count", 1)
        if is_scheduling_queue(queue):
            delay_passes += int(count) if isinstance(count, int) else 1
            continue
        keys = entry.get("routing-keys") or []
        key = ", ".join(_text(k) for k in keys) if isinstance(keys, list) else _text(keys)
        line = (f"{count}× {_text(entry.get('reason'))} from {queue or '?'} "
                f"(exchange '{_text(entry.get('exchange'))}', key {key or '-'})")
        if entry.get("time") is not None:
            line += f", last {when(entry['time'], now)}"
        lines.append(line)
    if delay_passes:
        lines.append(f"+ {delay_passes} passes through queuewatch delay levels and due queues "
                     "(delays and retries)")
    return lines


DLQ_COLUMNS = (
    Column("mark", "✓", 1), Column("job", "Job id", 20, flex=True, min_width=10, max_width=36),
    Column("queue", "Orig. queue", 14, 2, flex=True, min_width=10, max_width=20),
    Column("reason", "Reason", 10, 1), Column("attempts", "Att", 3, 3, right=True),
    Column("age", "Age", 6, right=True),
    Column("error", "Error", 30, flex=True, min_width=12),
)


def letter_row(dl: DeadLetter, marked: bool, now: float) -> tuple[Text | str, ...]:
    """The DLQ list's row of ``dl`` (:data:`DLQ_COLUMNS`); its age counted from ``now``."""
    d = dl.death
    error = f"{d.error_type or ''}: {d.error_message or ''}".strip(": ")
    ms = d.last_death_ms or published_ms(dl.headers, dl.properties)
    age = dl.age_seconds if ms is None else max(now - ms / 1000.0, 0.0)
    return (
        Text("✓", style="bold green") if marked else " ",
        dl.job_id or "-", d.original_queue or (d.route.routing_key if d.route else "-"),
        d.reason or "-", "-" if d.attempts is None else str(d.attempts),
        fmt_duration(age), error.splitlines()[0] if error else "-",
    )


def detail_text(dl: DeadLetter, now: float) -> Text:
    d = dl.death
    t = Text()
    t.append(f"{dl.job_id or '(no job id)'}\n", style="bold")
    facts = [f"reason {d.reason or '-'}", f"attempts {d.attempts or '-'}"]
    if dl.replay_count:
        facts.append("replayed once before" if dl.replay_count == 1
                     else f"replayed {dl.replay_count} times before")
    facts.append(f"{dl.size} bytes")
    t.append(" · ".join(facts) + "\n")
    if d.error_type or d.error_message:
        t.append(f"{d.error_type or 'error'}: {d.error_message or ''}\n", style="bold red")
    t.append("\nDeath\n", style="bold underline")
    route = d.route.describe() if d.route else "unknown: a replay cannot send it back"
    t.append(f"  replay to   {route}\n  queue       {d.original_queue or '-'}\n")
    first = "-" if d.first_death_ms is None else when(d.first_death_ms, now)
    last = "-" if d.last_death_ms is None else when(d.last_death_ms, now)
    t.append(f"  first death {first}\n  last death  {last}\n  known from  {SOURCES.get(d.source, d.source)}\n")
    t.append("\nHeaders\n", style="bold underline")
    for k, v in dl.headers.items():
        if k in SHOWN_ELSEWHERE:
            continue
        t.append(f"  {k}: ", style="cyan")
        t.append(f"{when(v, now) if k in TIME_HEADERS else _short(v)}\n")
    if dl.headers.get("x-death"):
        t.append("\nx-death (RabbitMQ's record of each dead-lettering)\n", style="bold underline")
        for line in death_lines(dl.headers["x-death"], now):
            t.append(f"  {line}\n")
    t.append(f"\nBody ({dl.body_kind})\n", style="bold underline")
    t.append(dl.body_pretty[:4000] + "\n")
    if d.traceback:
        t.append("\nTraceback\n", style="bold underline")
        t.append(d.traceback, style="red")
    return t


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _short(value: object, limit: int = 120) -> str:
    text = _text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
