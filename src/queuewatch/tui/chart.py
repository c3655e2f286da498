"""Charts with a time axis for the console: values binned by time over a window ending now,
as block characters several rows tall, with the time labels under them.

Pure functions (no widgets). A column with no point shows the last value only while that
point is less than ``max_gap`` old (a poll is a sample held until the next one); beyond that
the column is a gap (the console was closed, or polls failed) — never interpolated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from rich.text import Text

BLOCKS = " ▁▂▃▄▅▆▇█"
#: Windows a chart may span (seconds): the smallest that holds every point is chosen.
WINDOWS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
GAP = "·"


def span_text(seconds: float) -> str:
    """A window's length as a person says it: ``45s``, ``10m``, ``1h30m``, ``2h``, ``1d``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, rest = divmod(s, 60)
        return f"{m}m" if not rest else f"{m}m{rest:02d}s"
    if s < 86400:
        h, rest = divmod(s, 3600)
        return f"{h}h" if rest < 60 else f"{h}h{rest // 60:02d}m"
    d, rest = divmod(s, 86400)
    return f"{d}d" if rest < 3600 else f"{d}d{rest // 3600:02d}h"


def window_for(times: Sequence[float], now: float) -> float:
    """The smallest window (from :data:`WINDOWS`) reaching back to the oldest point."""
    span = now - min(times) if times else 0.0
    return next((float(w) for w in WINDOWS if w >= span), float(WINDOWS[-1]))


def max_gap_for(times: Sequence[float], default: float = 15.0) -> float:
    """How long a point stands for: 2.5 times the usual interval between points."""
    steps = sorted(b - a for a, b in itertools.pairwise(sorted(times)) if b > a)
    return 2.5 * steps[len(steps) // 2] if steps else default


def columns(points: Sequence[tuple[float, float]], now: float, window: float, width: int,
            max_gap: float) -> list[float | None]:
    """One value per column (oldest left, ``now`` right); None where there is no data."""
    width = max(width, 1)
    step = window / width
    start = now - window
    out: list[float | None] = [None] * width
    pts = sorted(p for p in points if p[0] <= now)
    j, last = 0, None
    for col in range(width):
        end = start + (col + 1) * step
        here: list[float] = []
        while j < len(pts) and pts[j][0] <= end:
            if pts[j][0] > end - step:
                here.append(pts[j][1])
            last = pts[j]
            j += 1
        if here:
            out[col] = max(here)
        elif last is not None and end - last[0] <= max_gap + step:
            out[col] = last[1]
    return out


def render(values: Sequence[float | None], height: int = 3, style: str = "green") -> Text:
    """Rows of block characters (top first); gaps as a dim dot on the bottom row."""
    peak = max((v for v in values if v is not None), default=0.0)
    t = Text()
    for row in range(height - 1, -1, -1):
        for v in values:
            if v is None:
                t.append(GAP if row == 0 else " ", style="dim")
                continue
            eighths = 0 if peak <= 0 else round(v / peak * height * 8)
            if v > 0 and eighths == 0:
                eighths = 1  # something, however small, is not nothing
            fill = min(max(eighths - row * 8, 0), 8)
            t.append(BLOCKS[fill], style=style)
        t.append("\n")
    return t


def axis(window: float, width: int) -> Text:
    """``-10m`` at the left, the middle time, ``now`` at the right."""
    left, mid, right = f"-{span_text(window)}", f"-{span_text(window / 2)}", "now"
    line = [" "] * max(width, len(left) + len(mid) + len(right) + 2)
    line[:len(left)] = left
    m = max(len(left) + 1, math.floor(len(line) / 2 - len(mid) / 2))
    line[m:m + len(mid)] = mid
    line[len(line) - len(right):] = right
    return Text("".join(line[:max(width, 1)]), style="dim")


def chart(points: Sequence[tuple[float, float]], now: float, width: int, height: int = 3,
          style: str = "green") -> tuple[Text, float]:
    """The chart of ``points`` (time, value) and its window (seconds)."""
    times = [p[0] for p in points]
    window = window_for(times, now)
    values = columns(points, now, window, width, max_gap_for(times))
    out = render(values, height, style)
    out.append_text(axis(window, width))
    return out, window
