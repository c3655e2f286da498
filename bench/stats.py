"""Numbers: samples -> median with min–max, ratios, percentiles, and their formatting."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """Repeated measurements of one quantity (e.g. jobs/s of three runs)."""

    samples: tuple[float, ...]
    unit: str
    """``/s`` for rates (higher is better), ``s``/``ms`` for times (lower is better)."""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def lo(self) -> float:
        return min(self.samples)

    @property
    def hi(self) -> float:
        return max(self.samples)

    @property
    def higher_is_better(self) -> bool:
        return self.unit.endswith("/s")

    def fmt(self) -> str:
        med = fmt_num(self.median, self.unit)
        if len(self.samples) < 2:
            return med
        return f"{med} ({fmt_num(self.lo, self.unit, bare=True)}–{fmt_num(self.hi, self.unit, bare=True)})"


def stat(samples: list[float], unit: str) -> Stat:
    return Stat(tuple(samples), unit)


def fmt_num(value: float, unit: str = "", bare: bool = False) -> str:
    """``12,345/s``, ``0.84 s``, ``12.3 ms`` (``bare`` drops the unit)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    if bare or not unit:
        return text
    return f"{text}{unit}" if unit.startswith("/") else f"{text} {unit}"


def ratio(value: Stat | None, baseline: Stat | None) -> float | None:
    """``value / baseline`` (for rates higher is better, for times lower is better; the
    caller words the target). With as many samples on both sides (interleaved runs), the
    median of the per-run ratios, else the ratio of the medians."""
    if value is None or baseline is None or baseline.median == 0:
        return None
    if len(value.samples) == len(baseline.samples) > 1 and all(baseline.samples):
        # runs were interleaved: pair run i with run i, so load drift cancels out
        return statistics.median(v / b for v, b in zip(value.samples, baseline.samples,
                                                       strict=True))
    return value.median / baseline.median


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}×"


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(round(p / 100 * len(sorted_values), 9))  # round: 99.9% of 1000 is 999
    k = max(0, min(len(sorted_values) - 1, rank - 1))
    return sorted_values[k]
