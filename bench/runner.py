"""Run the selected benchmark families, print each table as it completes, write the report."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import analysis, procs, report
from bench.harness import Bench, BenchConfig, Row, Section, make_settings
from queuewatch.broker.management import ManagementClient
from queuewatch.errors import QueuewatchError

Family = Callable[[Bench], Awaitable[list[Section]]]
#: The last run's results, for ``--render`` (git-ignored).
LAST_RUN = Path(__file__).resolve().parent / "results" / "last.json"
"""The last full run (every family, full sizes), or one with families merged into it."""
PARTIAL_RUN = LAST_RUN.with_name("partial.json")
"""Where a quick or ``--only`` run without ``--merge`` is saved: never over the full run
(a later ``--merge`` would build a report from the partial one)."""


def families() -> dict[str, Family]:
    """Every benchmark family, in the order they run (latency reuses worker figures)."""
    from bench import (
        b_console,
        b_delay,
        b_events,
        b_failover,
        b_latency,
        b_limits,
        b_monitor,
        b_outbox,
        b_priority,
        b_publish,
        b_replay,
        b_sse,
        b_stores,
        b_worker,
    )

    return {
        "worker": b_worker.run_worker,
        "telemetry": b_worker.run_telemetry,
        "prefetch": b_worker.run_prefetch,
        "processes": b_worker.run_processes,
        "publish": b_publish.run,
        "latency": b_latency.run,
        "priority": b_priority.run,
        "delay": b_delay.run,
        "replay": b_replay.run,
        "monitor": b_monitor.run,
        "console": b_console.run,
        "failover": b_failover.run,
        "events": b_events.run_recording,
        "lookup": b_events.run_lookup,
        "result-wait": b_events.run_result_wait,
        "sse": b_sse.run,
        "stores": b_stores.run,
        "outbox": b_outbox.run,
        "limits": b_limits.run,
    }


def parse_args(argv: list[str] | None) -> BenchConfig:
    names = list(families())
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="queuewatch benchmarks against raw aio-pika, pika, Dramatiq, Celery and "
                    "RabbitMQ's shovel, on the local broker; writes BENCHMARKS.md.",
    )
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and one run: checks the harness works (< 1 minute)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only these families (repeat or comma-separate): {', '.join(names)}")
    p.add_argument("--runs", type=int, default=None,
                   help="runs per figure (default 3; 1 with --quick)")
    p.add_argument("--out", default=None,
                   help="report path (default BENCHMARKS.md for a full or merged run, none for "
                        "a quick or --only run; '-' to write none)")
    p.add_argument("--render", metavar="JSON", default=None,
                   help="do not measure: re-render the report from a saved run "
                        "(bench/results/last.json), e.g. after editing bench/notes.md")
    p.add_argument("--merge", action="store_true",
                   help="with --only: replace those families' tables in the last saved run "
                        "and write the report from the merged set (keeps a report current as "
                        "components change without re-running everything)")
    p.add_argument("--concurrency", type=int, default=10, help="worker concurrency (default 10)")
    p.add_argument("--prefetch", type=int, default=None,
                   help="prefetch for the head-to-head worker benchmarks (default: the "
                        "queuewatch worker's default for the concurrency)")
    a = p.parse_args(argv)
    only = tuple(n.strip() for chunk in a.only for n in chunk.split(",") if n.strip())
    unknown = [n for n in only if n not in names]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    runs = a.runs if a.runs is not None else (1 if a.quick else 3)
    if runs < 1:
        p.error("--runs must be >= 1")
    if a.merge and (not only or a.quick):
        p.error("--merge needs --only (and no --quick): it replaces those families' tables")
    if a.merge and not LAST_RUN.exists():
        p.error(f"--merge: no full run saved in {LAST_RUN} to merge into; run the full "
                "benchmark once first (./dev bench)")
    partial = a.quick or (bool(only) and not a.merge)
    out = a.out if a.out is not None else (None if partial else "BENCHMARKS.md")
    return BenchConfig(quick=a.quick, runs=runs, only=only, out=None if out == "-" else out,
                       concurrency=a.concurrency, prefetch=a.prefetch, render=a.render,
                       merge=a.merge)


async def run(config: BenchConfig) -> int:
    settings = make_settings()
    mgmt = ManagementClient(settings)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    try:
        overview = await mgmt.overview()
    except QueuewatchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        await mgmt.aclose()
        return 2
    bench = Bench(settings, mgmt, config)
    sections: list[Section] = []
    try:
        for name, family in families().items():
            if config.only and name not in config.only:
                continue
            print(f"\n-- {name} ...", flush=True)
            f0 = time.monotonic()
            try:
                got = await family(bench)
            except Exception as exc:  # one family's crash must not lose the others' results
                got = [Section(name, f"{name} (failed)", "The benchmark crashed.", ["what"],
                               [Row(f"{type(exc).__name__}: {str(exc)[:300]}")])]
            for s in got:
                print(report.text_section(s), flush=True)
            print(f"   ({name}: {time.monotonic() - f0:.0f} s)", flush=True)
            sections.extend(got)
    finally:
        await mgmt.aclose()
        procs.stop_all()
    elapsed = time.monotonic() - t0
    print(f"\nbench: {bench.vhosts_made} vhosts created, {bench.vhosts_deleted} deleted")
    head = report.header(overview, config, started, elapsed)
    targets = report.targets_rows(sections)
    if targets:
        print("\n== Targets")
        print(report.text_table(["target", "goal", "measured", "verdict", "note"], targets))
    if config.merge:
        old_head, old_sections = report.load(LAST_RUN)
        fresh = {s.key for s in sections}
        families_run = set(config.only)
        kept = [s for s in old_sections
                if s.key not in fresh
                and not any(s.key.replace("console", "monitor").startswith(f)
                            for f in families_run)]
        order = {s.key: i for i, s in enumerate(old_sections)}
        sections = sorted(kept + sections, key=lambda s: order.get(s.key, len(order)))
        head = [*old_head, f"- **re-measured** {started:%H:%M} UTC ({elapsed / 60:.1f} min): "
                f"{', '.join(config.only)} at commit {report.git_commit()} (each table's ratios "
                "still come from one run)"]
    partial = config.quick or (bool(config.only) and not config.merge)
    saved = report.save(head, sections, PARTIAL_RUN if partial else LAST_RUN)
    if not config.out:
        print(f"\nresults saved in {saved} (no report written: pass --out, or --merge)")
    else:
        text = report.markdown(head, sections, analysis.explain(sections))
        Path(config.out).write_text(text)
        print(f"\nwrote {config.out} ({elapsed / 60:.1f} min; results saved in {saved})")
    return 0


def render(config: BenchConfig) -> int:
    """Re-render a saved run (after editing bench/notes.md) without measuring again."""
    assert config.render is not None
    head, sections = report.load(Path(config.render))
    out = config.out or "BENCHMARKS.md"
    Path(out).write_text(report.markdown(head, sections, analysis.explain(sections)))
    print(f"wrote {out} from {config.render}")
    return 0


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    if config.render:
        return render(config)
    procs.install_handlers()
    try:
        return asyncio.run(run(config))
    except KeyboardInterrupt:
        procs.stop_all()
        return 130
