"""One dead letter, rendered for the detail pane: error, death, headers, x-death, body, traceback."""

from __future__ import annotations

from rich.text import Text

from queuewatch.dlq.model import DeadLetter, format_ms


def detail_text(dl: DeadLetter) -> Text:
    d = dl.death
    t = Text()
    t.append(f"{dl.job_id or '(no job id)'}\n", style="bold")
    t.append(f"reason {d.reason or '-'} · attempts {d.attempts or '-'} · replayed {dl.replay_count}x"
             f" · {dl.size} bytes\n")
    if d.error_type or d.error_message:
        t.append(f"{d.error_type or 'error'}: {d.error_message or ''}\n", style="bold red")
    t.append("\nDeath\n", style="bold underline")
    t.append(f"  source      {d.source}\n  route       {d.route.describe() if d.route else 'unknown'}\n")
    t.append(f"  queue       {d.original_queue or '-'}\n")
    t.append(f"  first death {format_ms(d.first_death_ms)}\n  last death  {format_ms(d.last_death_ms)}\n")
    t.append("\nHeaders\n", style="bold underline")
    for k, v in dl.headers.items():
        if k in ("x-qw-traceback", "x-death"):
            continue
        t.append(f"  {k}: ", style="cyan")
        t.append(f"{_short(v)}\n")
    if "x-death" in dl.headers:
        t.append("\nx-death history\n", style="bold underline")
        for entry in dl.headers["x-death"] or []:
            t.append(f"  {_short(entry, 200)}\n")
    t.append(f"\nBody ({dl.body_kind})\n", style="bold underline")
    t.append(dl.body_pretty[:4000] + "\n")
    if d.traceback:
        t.append("\nTraceback\n", style="bold underline")
        t.append(d.traceback, style="red")
    return t


def _short(value: object, limit: int = 120) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
