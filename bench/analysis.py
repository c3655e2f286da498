"""The "where a target is missed, and why" part of the report.

For every missed target: by how much (computed), and the explanation in
``bench/notes.md`` under a heading naming the target (written after profiling it with
pyinstrument, see docs/benchmarks.md), so the generated report keeps the human analysis.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.harness import Section

NOTES = Path(__file__).resolve().parent / "notes.md"


def _notes() -> dict[str, str]:
    if not NOTES.exists():
        return {}
    out: dict[str, str] = {}
    for block in re.split(r"^### ", NOTES.read_text(), flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        out[title.strip().lower()] = body.strip()
    return out


def explain(sections: list[Section]) -> list[str]:
    notes = _notes()
    lines: list[str] = []
    for s in sections:
        for t in s.targets:
            if t.verdict != "MISS":
                continue
            lines.append(f"- **{t.what}**: goal {t.goal}, measured {t.measured}.")
            why = next((body for key, body in notes.items() if key in t.what.lower()), "")
            if why:
                lines += ["  " + ln if ln else "" for ln in why.splitlines()]
    return lines
