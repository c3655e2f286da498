"""Worker throughput: queuewatch vs a raw aio-pika loop vs Dramatiq vs Celery; telemetry
overhead; the prefetch sweep that justifies the default; 1 vs N processes."""

from __future__ import annotations

import os

from bench import peers
from bench.apps import common
from bench.cpu import CpuWindow
from bench.drain import rate_measure
from bench.harness import Bench, Row, Section, Target, compare, rate_row, verdict
from bench.stats import Stat, fmt_ratio, ratio

COLUMNS = ["system", "result", "ratio"]
LABELS = {
    "raw": "raw aio-pika consume+ack (baseline)",
    "queuewatch": "queuewatch worker (defaults: telemetry + metrics + idempotency on)",
    "dramatiq": "Dramatiq (RabbitMQ broker, threads)",
    "celery": "Celery (acks_late, threads pool)",
    "qw-noidem": "queuewatch worker, idempotency store off",
}


async def run_worker(bench: Bench) -> list[Section]:
    jobs = [("noop", 50_000, 300)]
    if not bench.quick:
        jobs.append(("io", 10_000, 100))
    return [await _head_to_head(bench, job, bench.size(full, quick))
            for job, full, quick in jobs]


async def _head_to_head(bench: Bench, job: str, count: int) -> Section:
    what = "no-op" if job == "noop" else "5 ms I/O-bound"
    section = Section(
        key=f"worker-{job}",
        title=f"Worker throughput, {what} jobs ({count:,} persistent jobs)",
        measures=(
            f"One worker process per system, concurrency {bench.config.concurrency}, "
            f"prefetch {bench.prefetch}, draining a preloaded backlog from the same kind of "
            "queue (x-max-priority 10); time from the first consumer to an empty queue "
            "(exact depth by passive declare every 20 ms). Runs interleaved across systems. "
            "Ratio: against the raw aio-pika consume+ack loop (median of per-run ratios)."
            + (" The job is `asyncio.sleep(0.005)` for queuewatch and raw aio-pika, "
               "`time.sleep(0.005)` in the peers' threads." if job == "io" else "")
        ),
        columns=COLUMNS,
    )
    contenders = [(s, rate_measure(bench, s, job, count)) for s in peers.SYSTEMS]
    if job == "noop" and not bench.quick:
        contenders.append(("qw-noidem", rate_measure(bench, "queuewatch", job, count,
                                                     idempotency=False)))
    results = await compare(bench, contenders, "/s")
    base = results["raw"][0]
    for key in ("raw", "queuewatch", "dramatiq", "celery", "qw-noidem"):
        if key in results:
            value, why = results[key]
            section.rows.append(rate_row(LABELS[key], value, base, na=why))
            if job == "noop" and value is not None and key in peers.SYSTEMS:
                bench.facts[f"worker_max_{key}"] = value.median
    qw, why_qw = results["queuewatch"]
    r = ratio(qw, base)
    section.targets.append(Target(
        f"worker {what} vs raw aio-pika", ">= 0.8×", fmt_ratio(r),
        verdict(None if r is None else r >= 0.8), why_qw))
    for peer in ("dramatiq", "celery"):
        rp = ratio(qw, results[peer][0])
        section.targets.append(Target(
            f"worker {what} vs {peer.capitalize()}", "ahead (> 1×)", fmt_ratio(rp),
            verdict(None if rp is None else rp > 1.0), why_qw or results[peer][1]))
    return section


async def run_telemetry(bench: Bench) -> list[Section]:
    count = bench.size(20_000, 300)
    section = Section(
        key="telemetry",
        title=f"Telemetry overhead ({count:,} no-op jobs)",
        measures=("The queuewatch worker with heartbeats (1 s) + Prometheus metrics on vs off "
                  "(metrics off, a single heartbeat), same queue, concurrency and prefetch, "
                  "runs interleaved. Overhead = 1 − on/off."),
        columns=COLUMNS,
    )
    results = await compare(bench, [
        ("qw-telemetry-off", rate_measure(bench, "queuewatch", "noop", count, telemetry=False)),
        ("qw-telemetry-on", rate_measure(bench, "queuewatch", "noop", count, telemetry=True)),
    ], "/s")
    off, why_off = results["qw-telemetry-off"]
    on, why_on = results["qw-telemetry-on"]
    section.rows.append(rate_row("telemetry + metrics off (baseline)", off, off, na=why_off))
    section.rows.append(rate_row("telemetry + metrics on", on, off, na=why_on))
    r = ratio(on, off)
    overhead = None if r is None else 1.0 - r
    section.targets.append(Target(
        "telemetry overhead", "<= 10%", "n/a" if overhead is None else f"{overhead:.1%}",
        verdict(None if overhead is None else overhead <= 0.10), why_on or why_off,
    ))
    return [section]


async def run_prefetch(bench: Bench) -> list[Section]:
    count = bench.size(4_000, 200)
    sweep = (bench.prefetch,) if bench.quick else tuple(sorted(
        {1, 10, 50, 100, 300, 1000, bench.prefetch}))  # the points + the default
    section = Section(
        key="prefetch",
        title=f"Prefetch sweep ({count:,} no-op jobs per point)",
        measures=(f"The queuewatch worker (concurrency {bench.config.concurrency}) and the raw "
                  "aio-pika loop at each prefetch, interleaved; ratio = queuewatch / raw at "
                  "the same prefetch."),
        columns=["prefetch", "queuewatch", "raw aio-pika", "ratio"],
    )
    best: tuple[float, int] | None = None
    for prefetch in sweep:
        results = await compare(bench, [
            (f"qw-prefetch-{prefetch}",
             rate_measure(bench, "queuewatch", "noop", count, prefetch=prefetch)),
            (f"raw-prefetch-{prefetch}",
             rate_measure(bench, "raw", "noop", count, prefetch=prefetch)),
        ], "/s")
        qw, why = results[f"qw-prefetch-{prefetch}"]
        raw, why_raw = results[f"raw-prefetch-{prefetch}"]
        section.rows.append(Row(str(prefetch), {
            "queuewatch": qw.fmt() if qw else "n/a",
            "raw aio-pika": raw.fmt() if raw else "n/a",
            "ratio": fmt_ratio(ratio(qw, raw)),
        }, qw, why or why_raw))
        if qw is not None and (best is None or qw.median > best[0]):
            best = (qw.median, prefetch)
    if best is not None:
        section.notes.append(
            f"Fastest prefetch this run: {best[1]} ({best[0]:,.0f} jobs/s); the queuewatch "
            f"default (and the head-to-head benchmarks) use {bench.prefetch} for concurrency "
            f"{bench.config.concurrency}."
        )
    return [section]


async def run_processes(bench: Bench) -> list[Section]:
    """``queuewatch worker --processes 2`` vs ``--processes 1`` (and Dramatiq ``-p 2`` vs
    ``-p 1`` when installed), interleaved: no-op jobs (where the broker, on the same
    cores, takes what a second process would need) and 1 ms CPU-bound jobs (where the
    jobs' own work needs the cores)."""
    sections = [await _processes(bench, "noop", bench.size(20_000, 300))]
    if not bench.quick:
        sections.append(await _processes(bench, "cpu", 5_000))
    return sections


async def _processes(bench: Bench, job: str, count: int) -> Section:
    what = ("no-op" if job == "noop" else
            f"CPU-bound ({common.CPU_SECONDS * 1000:g} ms of Python per job)")
    section = Section(
        key="processes" if job == "noop" else f"processes-{job}",
        title=f"Worker processes, 1 vs 2 ({count:,} {what} persistent jobs)",
        measures=(
            "`queuewatch worker bench.apps.qw_app:make_worker --processes N` (defaults: "
            f"telemetry, metrics, the idempotency store shared by the processes; concurrency "
            f"{bench.config.concurrency} and prefetch {bench.prefetch} per process) draining "
            "a preloaded backlog, N = 1 and 2, beside Dramatiq `-p 1` / `-p 2` when it is "
            "installed; runs interleaved. Ratio: against the same system's 1 process. The "
            "machine's cores bound the gain (2 cores here, shared with the broker): the "
            "last column says how many cores the broker used and how many stayed idle "
            "while each drained (psutil, median of the runs)."
        ),
        columns=[*COLUMNS, "cores"],
    )
    load = os.getloadavg()
    cpu = {(system, n): CpuWindow.for_url(bench.settings.amqp_url)
           for system in ("queuewatch", "dramatiq") for n in (1, 2)}
    contenders = [(f"{system}-p{n}", rate_measure(bench, system, job, count, processes=n,
                                                  cpu=cpu[system, n]))
                  for system in ("queuewatch", "dramatiq") for n in (1, 2)]
    results = await compare(bench, contenders, "/s")
    labels = {"queuewatch": "queuewatch worker --processes", "dramatiq": "Dramatiq -p"}
    for system in ("queuewatch", "dramatiq"):
        one, why_one = results[f"{system}-p1"]
        for n in (1, 2):
            value, why = results[f"{system}-p{n}"]
            tag = " (baseline)" if n == 1 else ""
            row = rate_row(f"{labels[system]} {n}{tag}", value, one, na=why or why_one)
            row.cells["cores"] = cpu[system, n].text()
            section.rows.append(row)
    qw1, why1 = results["queuewatch-p1"]
    qw2, why2 = results["queuewatch-p2"]
    r = ratio(qw2, qw1)
    section.targets.append(Target(
        f"worker 2 processes vs 1, {what} jobs", ">= 1.8× (where the cores allow)",
        fmt_ratio(r), verdict(None if r is None else r >= 1.8), why1 or why2))
    for n in (1, 2):
        # queuewatch against Dramatiq with as many processes (paired by round, interleaved)
        qw, why_qw = results[f"queuewatch-p{n}"]
        dr, why_dr = results[f"dramatiq-p{n}"]
        cross = ratio(qw, dr)
        section.rows.append(Row(
            f"queuewatch / Dramatiq, {n} process{'es' if n > 1 else ''} each",
            {"result": pair_spread(qw, dr), "ratio": fmt_ratio(cross)}, None,
            why_qw or why_dr))
        section.targets.append(Target(
            f"worker {what} vs Dramatiq, {n} process{'es' if n > 1 else ''}", "> 1×",
            fmt_ratio(cross), verdict(None if cross is None else cross > 1), why_qw or why_dr))
    section.notes.append(f"load average (1, 5, 15 min) at the start: {load[0]:.1f}, {load[1]:.1f}, "
                         f"{load[2]:.1f}; at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
                         + f"; {os.cpu_count()} cores")
    return section


def pair_spread(value: Stat | None, baseline: Stat | None) -> str:
    """The per-round ratios of two interleaved contenders: 'min–max of N rounds'."""
    if value is None or baseline is None or len(value.samples) != len(baseline.samples):
        return "n/a"
    rs = [v / b for v, b in zip(value.samples, baseline.samples, strict=True) if b]
    return f"per round {min(rs):.2f}–{max(rs):.2f}× ({len(rs)} rounds)" if rs else "n/a"
