"""Worker throughput: queuewatch vs a raw aio-pika loop vs Dramatiq vs Celery; telemetry
overhead; the prefetch sweep that justifies the default."""

from __future__ import annotations

from bench import peers
from bench.drain import system_rate
from bench.harness import Bench, Row, Section, Target, rate_row, verdict
from bench.stats import Stat, fmt_ratio, ratio

COLUMNS = ["system", "result", "ratio"]


async def run_worker(bench: Bench) -> list[Section]:
    out = []
    jobs = (("noop", 50_000, 300),) if bench.quick else (("noop", 50_000, 300), ("io", 10_000, 100))
    for job, full, quick in jobs:
        out.append(await _head_to_head(bench, job, bench.size(full, quick)))
    return out


async def _head_to_head(bench: Bench, job: str, count: int) -> Section:
    cfg = bench.config
    what = "no-op" if job == "noop" else "5 ms I/O-bound"
    section = Section(
        key=f"worker-{job}",
        title=f"Worker throughput, {what} jobs ({count:,} persistent jobs)",
        measures=(
            f"One worker process per system, concurrency {cfg.concurrency}, prefetch "
            f"{bench.prefetch}, draining a preloaded backlog; time from the first consumer to an "
            "empty queue (exact depth by passive declare every 20 ms). Ratio: against the raw "
            "aio-pika consume+ack loop on the same queue."
            + (" The job is `asyncio.sleep(0.005)` for queuewatch and raw aio-pika, "
               "`time.sleep(0.005)` in the peers' threads." if job == "io" else "")
        ),
        columns=COLUMNS,
    )
    results: dict[str, Stat | None] = {}
    notes: dict[str, str] = {}
    for system in ("raw", "queuewatch", "dramatiq", "celery"):
        results[system], notes[system] = await system_rate(bench, system, job, count)
    labels = {
        "raw": "raw aio-pika consume+ack (baseline)",
        "queuewatch": "queuewatch worker (defaults: telemetry + metrics + idempotency on)",
        "dramatiq": "Dramatiq (RabbitMQ broker, threads)",
        "celery": "Celery (acks_late, threads pool)",
    }
    if job == "noop" and not bench.quick:
        results["qw-noidem"], notes["qw-noidem"] = await system_rate(
            bench, "queuewatch", job, count, idempotency=False, label="qw-noidem")
        labels["qw-noidem"] = "queuewatch worker, idempotency store off"
    base = results["raw"]
    for system, label in labels.items():
        section.rows.append(rate_row(label, results[system], base, na=notes[system]))
    if job == "noop" and results["queuewatch"] is not None:
        bench.facts["worker_qw"] = results["queuewatch"].median
    for system in peers.SYSTEMS:
        value = results[system]
        if job == "noop" and value is not None:
            bench.facts[f"worker_max_{system}"] = value.median
    qw = results["queuewatch"]
    r = ratio(qw, base)
    section.targets.append(Target(
        f"worker {what} vs raw aio-pika", ">= 0.8×", fmt_ratio(r),
        verdict(None if r is None else r >= 0.8), notes["queuewatch"],
    ))
    for peer in ("dramatiq", "celery"):
        rp = ratio(qw, results[peer])
        section.targets.append(Target(
            f"worker {what} vs {peer.capitalize()}", "ahead (> 1×)", fmt_ratio(rp),
            verdict(None if rp is None else rp > 1.0), notes["queuewatch"] or notes[peer],
        ))
    return section


async def run_telemetry(bench: Bench) -> list[Section]:
    count = bench.size(30_000, 300)
    section = Section(
        key="telemetry",
        title=f"Telemetry overhead ({count:,} no-op jobs)",
        measures=("The queuewatch worker with heartbeats + Prometheus metrics on vs off, same "
                  "queue, concurrency and prefetch. Overhead = 1 − on/off."),
        columns=COLUMNS,
    )
    off, why_off = await system_rate(bench, "queuewatch", "noop", count, telemetry=False,
                                     label="qw-telemetry-off")
    on, why_on = await system_rate(bench, "queuewatch", "noop", count, telemetry=True,
                                   label="qw-telemetry-on")
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
    count = bench.size(5_000, 200)
    sweep = (bench.prefetch,) if bench.quick else (1, 10, 50, 100, 300, 1000)
    section = Section(
        key="prefetch",
        title=f"Prefetch sweep ({count:,} no-op jobs per point)",
        measures=(f"The queuewatch worker (concurrency {bench.config.concurrency}) and the raw "
                  "aio-pika loop at each prefetch; ratio = queuewatch / raw at the same prefetch."),
        columns=["prefetch", "queuewatch", "raw aio-pika", "ratio"],
    )
    best: tuple[float, int] | None = None
    for prefetch in sweep:
        qw, why = await system_rate(bench, "queuewatch", "noop", count, prefetch=prefetch,
                                    label=f"qw-prefetch-{prefetch}")
        raw, why_raw = await system_rate(bench, "raw", "noop", count, prefetch=prefetch,
                                         label=f"raw-prefetch-{prefetch}")
        section.rows.append(Row(str(prefetch), {
            "queuewatch": qw.fmt() if qw else "n/a",
            "raw aio-pika": raw.fmt() if raw else "n/a",
            "ratio": fmt_ratio(ratio(qw, raw)),
        }, qw, why or why_raw))
        if qw is not None and (best is None or qw.median > best[0]):
            best = (qw.median, prefetch)
    if best is not None:
        section.notes.append(
            f"Fastest prefetch this run: {best[1]} ({best[0]:,.0f} jobs/s); the head-to-head "
            f"benchmarks use prefetch {bench.prefetch}."
        )
    return [section]
