"""The console's growth table: update time and RSS at 1k / 5k / 20k / 50k queues.

Each size runs ``python -m queuewatch.tui.perf N REFRESHES HISTORY`` in a process of its own
(so its RSS is the console's alone): the real Textual app, headless (``App.run_test``), fed
synthetic snapshots in which every queue's numbers moved, its per-queue history filled with
``history_size`` polls first (the steady state after 10 minutes at the default 5 s). The
baseline, measured in the same process and run: decoding the management API's JSON for the
same queues (what any client reading them pays per poll, before doing anything with them).
"""

from __future__ import annotations

import sys

from bench import procs
from bench.harness import Bench, Row, Section, Target, one_line, verdict
from bench.stats import fmt_num, fmt_ratio, ratio, stat

HISTORY = 120
"""Polls of history kept per queue: the default ``history_size``."""


async def run(bench: Bench) -> list[Section]:
    sizes = (300,) if bench.quick else (1_000, 5_000, 20_000, 50_000)
    refreshes = 3 if bench.quick else 15
    section = Section(
        key="console", title="Console growth, " + " / ".join(f"{n:,}" for n in sizes) + " queues",
        measures=(
            "The Textual app headless in its own process per size, synthetic snapshots where "
            f"every queue moved, {refreshes} refreshes, history filled with {HISTORY} polls "
            "first. Update: from `apply_snapshot` until every widget processed its messages "
            "(`pilot.pause(0)`). Baseline: `json.loads` of the management API's answer for "
            "the same queues (the monitor's `columns=`), as many times, in the same process "
            "after the refreshes. RSS: after the refreshes (the snapshot shown, the table, the "
            "history), before the baseline. First load: the first snapshot of that size; "
            "its rows are added 2,000 per turn of the event loop, so 'longest busy' is the "
            "longest the console could not answer a key, and 'table full' when every row "
            "was in; untimed in the median."
        ),
        columns=["queues", "update (median, min–max)", "JSON decode (baseline)", "ratio",
                 "RSS", "first load: longest busy / table full"],
    )
    medians: dict[int, float] = {}
    rss: dict[int, float] = {}
    for n in sizes:
        data, why = await _probe(n, refreshes)
        if data is None:
            section.rows.append(Row(f"{n:,}", {"update (median, min–max)": "n/a"}, None, why))
            continue
        update, decode = stat(data["refresh_ms"], "ms"), stat(data["decode_ms"], "ms")
        medians[n], rss[n] = update.median, data["rss"] / 2**20
        section.rows.append(Row(f"{n:,}", {
            "update (median, min–max)": update.fmt(), "JSON decode (baseline)": decode.fmt(),
            "ratio": fmt_ratio(ratio(update, decode)), "RSS": f"{rss[n]:,.0f} MB",
            "first load: longest busy / table full":
                f"{fmt_num(data.get('first_load_busy_ms', data['first_load_ms']) / 1000, 's')} / "
                f"{fmt_num(data.get('first_load_filled_ms', data['first_load_ms']) / 1000, 's')}"},
            update))
    if len(rss) >= 2:
        lo, hi = min(rss), max(rss)
        per_queue = (rss[hi] - rss[lo]) * 2**20 / (hi - lo) / 1024
        section.notes.append(f"RSS grows {per_queue:.1f} KB per queue from {lo:,} to {hi:,} "
                             f"queues (history of {HISTORY} polls included).")
    big, mid = sizes[-1], (5_000 if 5_000 in sizes else sizes[0])
    section.targets += [
        Target(f"console update median at {mid:,} queues", "< 100 ms",
               fmt_num(medians.get(mid, float("nan")), "ms"),
               verdict(None if mid not in medians else medians[mid] < 100)),
        Target(f"console update median at {big:,} queues", "< 250 ms",
               fmt_num(medians.get(big, float("nan")), "ms"),
               verdict(None if big not in medians else medians[big] < 250)),
        Target(f"console RSS at {big:,} queues", "< 400 MB",
               f"{rss[big]:,.0f} MB" if big in rss else "n/a",
               verdict(None if big not in rss else rss[big] < 400)),
    ]
    return [section]


async def _probe(queues: int, refreshes: int) -> tuple[dict[str, object] | None, str]:
    proc = procs.python("queuewatch.tui.perf", str(queues), str(refreshes), str(HISTORY),
                        name=f"console-{queues}")
    found, code, out = await procs.last_json_line(proc, 900, 0.2, 50)
    if found is None:
        return None, one_line(f"failed: the console probe exited with {code}: {out[-300:]}")
    return found, ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run: python -m bench --only console")
