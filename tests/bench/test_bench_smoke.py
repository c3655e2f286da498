"""The benchmark harness works: ``python -m bench --quick`` runs every family against the
real broker, writes a report, and leaves no worker process or vhost behind.

This checks the harness, never the numbers (no timing assertions: figures belong in
BENCHMARKS.md, measured as ratios in one run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
from bench.report import markdown
from bench.runner import parse_args
from bench.stats import Stat, fmt_num, percentile, ratio

ROOT = Path(__file__).resolve().parents[2]
FAMILY_TITLES = (
    "Worker throughput", "Telemetry overhead", "Prefetch sweep", "Publish throughput",
    "End-to-end latency", "Priority queue cost", "DLQ replay", "Monitor snapshot",
    "Console,", "Console growth", "Delayed delivery through a due queue",
)


def _processes_of_run(run_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("BENCH_RUN_ID") == run_id:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.mark.slow  # every family, quick: under 160 s in the last CI run, 6.5 min at load 10
@pytest.mark.timeout(960)
def test_quick_run_measures_every_family_and_writes_the_report(tmp_path: Path) -> None:
    # Given the real broker and a run id every process of this run inherits
    out = tmp_path / "BENCHMARKS.md"
    run_id = uuid.uuid4().hex
    env = {**os.environ, "BENCH_RUN_ID": run_id}

    # When the quick benchmark runs
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )

    # Then it succeeds and writes a report with the header, targets and every family
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert re.search(r"\*\*broker\*\*: RabbitMQ \d+\.\d+", text)
    assert "**machine**:" in text and "**date**:" in text
    assert "## Targets" in text
    for title in FAMILY_TITLES:
        assert f"## {title}" in text, f"section {title!r} missing"
    assert "(failed)" not in text, "a benchmark family crashed"
    # ... and the baselines, which depend on nobody's component, were measured
    assert re.search(r"\| raw aio-pika consume\+ack \(baseline\) \| [\d,.]+/s", text)
    assert re.search(r"\| raw aio-pika, window \d+ \(baseline\) \| [\d,.]+/s", text)
    assert re.search(r"\| naive pika loop, wait for each confirm \| [\d,.]+/s", text)
    assert re.search(r"\| RabbitMQ shovel, on-confirm \(baseline\) \| [\d,.]+/s", text)
    assert re.search(r"\(fastest: baseline\) \| [\d,.]+ ms", text)

    # And no worker process outlives the run, and every vhost it made is gone
    assert _processes_of_run(run_id) == []
    made = re.search(r"bench: (\d+) vhosts created, (\d+) deleted", done.stdout)
    assert made is not None and int(made.group(1)) > 0
    assert made.group(1) == made.group(2)


def test_stats_median_range_ratio_and_percentiles() -> None:
    # Given three runs of a rate and of a baseline
    rate = Stat((900.0, 1000.0, 1200.0), "/s")
    base = Stat((2000.0, 1900.0, 2100.0), "/s")
    # Then the figure is the median with min–max; interleaved runs are compared pairwise
    # (median of 900/2000, 1000/1900, 1200/2100), unequal run counts by their medians
    assert rate.fmt() == "1,000/s (900–1,200)"
    assert ratio(rate, base) == pytest.approx(1000 / 1900)
    assert ratio(rate, Stat((2000.0,), "/s")) == pytest.approx(0.5)
    assert ratio(rate, None) is None
    assert fmt_num(12.345, "ms") == "12.3 ms"
    values = sorted(float(i) for i in range(1, 1001))
    assert percentile(values, 50) == 500.0
    assert percentile(values, 99.9) == 999.0
    assert percentile(values, 100) == 1000.0


def test_cli_defaults_and_bad_names() -> None:
    assert parse_args(["--quick"]).runs == 1
    assert parse_args([]).runs == 3
    assert parse_args(["--only", "worker,publish", "--only", "monitor"]).only == (
        "worker", "publish", "monitor")
    with pytest.raises(SystemExit):
        parse_args(["--only", "nonsense"])
    with pytest.raises(SystemExit):
        parse_args(["--runs", "0"])
    # a partial run writes no report unless asked (it would replace the full one)
    assert parse_args([]).out == "BENCHMARKS.md"
    assert parse_args(["--quick"]).out is None and parse_args(["--only", "replay"]).out is None
    assert parse_args(["--quick", "--out", "x.md"]).out == "x.md"
    with pytest.raises(SystemExit):
        parse_args(["--merge"])  # merge what?


def test_report_without_results_still_renders() -> None:
    text = markdown(["- **date**: now"], [], [])
    assert text.startswith("# queuewatch benchmarks")
    assert "## Targets" not in text
