"""Monitor growth: at 1k, 5k and 20k queues, the snapshot (`Monitor.poll()`), the exporter's
scrape and `status --json`, each beside the fastest raw management-API fetch of the same
fields at the same size (unpaged `columns=`, pages of 500 one after another, pages at once),
in one run; and the TUI's update time and RSS at 5k."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aio_pika
import httpx

from bench.amqp_tools import connect
from bench.harness import Bench, NotAvailable, Row, Section, Target, one_line, verdict
from bench.stats import Stat, fmt_num, fmt_ratio, ratio, stat
from queuewatch.broker.management import MAX_PAGE_SIZE, ManagementClient, q
from queuewatch.config import Settings

NODE_COLUMNS = "name,running,mem_alarm,disk_free_alarm,mem_used,mem_limit,disk_free,disk_free_limit"
OVERVIEW_COLUMNS = "rabbitmq_version,cluster_name,erlang_version"


def queue_columns() -> tuple[str, ...]:
    """The fields the monitor asks for (so the raw fetch fetches exactly the same)."""
    try:
        from queuewatch.monitor.queues import MONITOR_QUEUE_COLUMNS

        return tuple(MONITOR_QUEUE_COLUMNS)
    except ImportError:
        from queuewatch.broker.management import QUEUE_COLUMNS

        return QUEUE_COLUMNS


async def make_queues(settings: Settings, start: int, stop: int) -> None:
    """Declare queues ``mon-<start>`` .. ``mon-<stop-1>``; every 10th holds one message."""
    conn = await connect(settings)
    try:
        async def batch(indexes: range) -> None:
            ch = await conn.channel()
            for i in indexes:
                name = f"mon-{i:05d}"
                await ch.declare_queue(name, durable=True, arguments={"x-max-length": 10_000})
                if i % 10 == 0:
                    await ch.default_exchange.publish(
                        aio_pika.Message(b"{}", timestamp=time.time()), name)
            await ch.close()
        lanes = 8
        await asyncio.gather(*(batch(range(start + k, stop, lanes)) for k in range(lanes)))
    finally:
        await conn.close()


async def wait_listed(http: httpx.AsyncClient, vhost: str, count: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        r = await http.get(f"/api/queues/{q(vhost)}",
                           params={"page": 1, "page_size": 1, "columns": "name"})
        if int(r.json().get("total_count", 0)) >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the management API never listed {count} queues")
        await asyncio.sleep(0.2)


# -- raw fetches of the same data a snapshot needs --------------------------------------

def _raw(http: httpx.AsyncClient, vhost: str, mode: str) -> Callable[[], Awaitable[int]]:
    cols = ",".join(queue_columns())
    path = f"/api/queues/{q(vhost)}"

    async def page(n: int) -> dict[str, Any]:
        r = await http.get(path, params={"page": n, "page_size": MAX_PAGE_SIZE, "columns": cols})
        r.raise_for_status()
        return dict(r.json())

    async def queues() -> list[Any]:
        if mode == "unpaged":
            r = await http.get(path, params={"columns": cols})
            r.raise_for_status()
            return list(r.json())
        first = await page(1)
        items = list(first["items"])
        rest = range(2, int(first["page_count"]) + 1)
        if mode == "sequential":
            for n in rest:
                items += (await page(n))["items"]
        else:
            for got in await asyncio.gather(*(page(n) for n in rest)):
                items += got["items"]
        return items

    async def fetch() -> int:
        qs, _nodes, _ov = await asyncio.gather(
            queues(), http.get("/api/nodes", params={"columns": NODE_COLUMNS}),
            http.get("/api/overview", params={"columns": OVERVIEW_COLUMNS}))
        return len(qs)
    return fetch


async def _timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return (time.perf_counter() - t0) * 1000


RAW_MODES = {
    "sequential": "raw httpx: pages of 500 one after another, columns=",
    "concurrent": "raw httpx: page 1, then the other pages of 500 at once, columns=",
    "unpaged": "raw httpx: one unpaged request, columns=",
}


async def _snapshot_section(bench: Bench, settings: Settings, http: httpx.AsyncClient,
                            n: int, samples: int) -> Section:
    vhost = settings.effective_vhost
    section = Section(
        key=f"monitor-{n}", title=f"Monitor snapshot, {n:,} queues",
        measures=(
            f"One snapshot of a vhost with {n:,} queues: `Monitor.poll()` (queues with the "
            "monitor's columns, plus nodes and overview, then parsing, lag/ETA, detectors, "
            "alerts, history) vs raw httpx fetches of the same three endpoints and fields "
            f"with a kept-alive client. {samples} samples each, interleaved. Ratio: against "
            "the fastest raw fetch. Then an exporter scrape (served from the background "
            "poll's snapshot, never polling), and `queuewatch status --json` as a process "
            "against a raw Python process fetching and printing the same (its own ratio)."
        ),
        columns=["fetch", "result", "ratio"],
    )
    # pages of 500 one after another are quadratic (59 s a sweep at 20k in the issue-16
    # run, 4.9x the unpaged fetch): measured up to 5k only
    modes = [m for m in RAW_MODES if not (m == "sequential" and n >= 20_000)]
    times: dict[str, list[float]] = {m: [] for m in modes}
    snap: list[float] = []
    monitor: Any = None
    why = ""
    try:
        from queuewatch.monitor import Monitor

        mgmt = ManagementClient(settings)
        monitor = Monitor(mgmt, settings)
        await monitor.poll()  # warm-up (connection pool)
    except (ImportError, NotAvailable) as exc:
        why = f"not available: {exc}"
    for mode in modes:
        await _raw(http, vhost, mode)()  # warm-up
    for _ in range(samples):
        for mode in modes:
            times[mode].append(await _timed(_raw(http, vhost, mode)))
        if monitor is not None:
            snap.append(await _timed(monitor.poll))
    if monitor is not None:
        await mgmt.aclose()
    stats = {m: stat(v, "ms") for m, v in times.items()}
    fastest = min(stats, key=lambda m: stats[m].median)
    base = stats[fastest]
    ours = stat(snap, "ms") if snap else None
    for mode in modes:
        label = RAW_MODES[mode]
        tag = " (fastest: baseline)" if mode == fastest else ""
        section.rows.append(Row(label + tag, {"result": stats[mode].fmt(),
                                              "ratio": fmt_ratio(ratio(stats[mode], base))},
                                stats[mode]))
    section.rows.append(Row("queuewatch Monitor.poll() snapshot", {
        "result": ours.fmt() if ours else "n/a", "ratio": fmt_ratio(ratio(ours, base))},
        ours, why))
    section.rows += await _scrape_rows(settings, samples, base)
    section.rows += await _status_rows(settings, samples)
    r = ratio(ours, base)
    section.targets.append(Target(f"snapshot of {n:,} queues vs raw fetch", "<= 1.3×",
                                  fmt_ratio(r), verdict(None if r is None else r <= 1.3), why))
    return section


async def _scrape_rows(settings: Settings, samples: int, base: Stat) -> list[Row]:
    """The exporter at this size: a scrape serves the background poll's latest snapshot."""
    try:
        from queuewatch.metrics import Exporter
    except ImportError as exc:
        return [Row("exporter scrape", {"result": "n/a"}, None, f"not available: {exc}")]
    exporter = await asyncio.to_thread(Exporter, settings, heartbeats=False)
    try:
        port = await asyncio.to_thread(exporter.start, 0, "127.0.0.1")
        deadline = time.monotonic() + 300
        while exporter.poller.last_good() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the first background poll (scrapes never poll)
        plain, gzipped = {"Accept-Encoding": "identity"}, {"Accept-Encoding": "gzip"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            size = len((await c.get("/metrics", headers=plain)).content)
            wire = int((await c.get("/metrics", headers=gzipped)).headers.get(
                "content-length", 0))
            times, ztimes = [], []
            for _ in range(samples):  # interleaved
                times.append(await _timed(lambda c=c: c.get("/metrics", headers=plain)))
                ztimes.append(await _timed(lambda c=c: c.get("/metrics", headers=gzipped)))
            polls = exporter.poller.polls
            renders = getattr(getattr(exporter, "exposition", None), "renders", None)
    finally:
        await asyncio.to_thread(exporter.close)
    st, zst = stat(times, "ms"), stat(ztimes, "ms")
    rendered = "" if renders is None else f", {renders} render(s)"
    return [Row("exporter scrape (serves the background poll's snapshot)", {
        "result": st.fmt(), "ratio": fmt_ratio(ratio(st, base))}, st,
        f"{size / 1024:,.0f} KiB; {polls} background poll(s){rendered} during "
        f"{2 * samples + 2} scrapes"),
        Row("exporter scrape, gzip (Prometheus asks for it)", {
            "result": zst.fmt(), "ratio": fmt_ratio(ratio(zst, base))}, zst,
            f"{wire / 1024:,.0f} KiB on the wire; decoded by httpx")]


async def _status_rows(settings: Settings, samples: int) -> list[Row]:
    """``queuewatch status --json`` as a process, against a raw Python process fetching the
    same endpoints and printing them (both: interpreter start, imports, fetch, JSON)."""
    from bench import procs

    user, password = settings.credentials
    conn = ["--amqp-url", settings.amqp_url_for(), "--management-url", settings.management_url,
            "--vhost", settings.effective_vhost]
    commands = {
        "raw": [sys.executable, "-m", "bench.apps.raw_fetch"],
        "status-nohb": [sys.executable, "-m", "queuewatch.cli.main", "status", "--json",
                        "--no-heartbeats", *conn],
        "status": [sys.executable, "-m", "queuewatch.cli.main", "status", "--json", *conn],
    }
    env = {"BENCH_MGMT_URL": settings.management_url, "BENCH_VHOST": settings.effective_vhost,
           "BENCH_USER": user, "BENCH_PASSWORD": password,
           "BENCH_COLUMNS": ",".join(queue_columns())}
    times: dict[str, list[float]] = {k: [] for k in commands}
    why = ""
    for _ in range(samples):
        for key, cmd in commands.items():
            t0 = time.perf_counter()
            proc = procs.start(cmd, env=env, name=f"status-{key}")
            code = await asyncio.to_thread(proc.wait, 300)
            times[key].append((time.perf_counter() - t0) * 1000)
            if code != 0:
                why = one_line(f"{key} exited with {code}: {procs.log_tail(proc, 5)}")
            procs.stop(proc)
    stats = {k: stat(v, "ms") for k, v in times.items()}
    raw = stats["raw"]
    labels = {"raw": "raw process: httpx unpaged fetch + JSON (status baseline)",
              "status-nohb": "queuewatch status --json --no-heartbeats (process)",
              "status": "queuewatch status --json (process, listens for heartbeats)"}
    return [Row(labels[k], {"result": v.fmt(), "ratio": fmt_ratio(ratio(v, raw))}, v,
                why if k != "raw" else "") for k, v in stats.items()]


async def _tui_rows(settings: Settings, refreshes: int) -> tuple[list[Row], list[Target]]:
    env = {"BENCH_AMQP_URL": settings.amqp_url_for(), "BENCH_VHOST": settings.effective_vhost,
           "BENCH_REFRESHES": str(refreshes)}
    from bench import procs

    proc = procs.python("bench.apps.tui_probe", env=env, name="tui-probe")
    found, code, out = await procs.last_json_line(proc, 300, 0.1, 200)
    if found is None:
        why = one_line(f"failed: the TUI probe exited with {code}: {out[-400:]}")
        return [Row("TUI update", {"result": "n/a"}, None, why)], [
            Target("TUI update median", "< 100 ms", "n/a", "n/a", why)]
    data: dict[str, Any] = found
    apply_s = stat(data["apply_ms"], "ms")
    rendered = stat(data["rendered_ms"], "ms")
    rss_mb = data["rss"] / 2**20
    done = len(data["apply_ms"])
    rows = [
        Row(f"TUI apply_snapshot (cells updated), {data['queues']:,} queues, "
            f"{done} refreshes" + ("" if done == refreshes else
                                   f" (of {refreshes}: the 150 s budget ran out)"), {"result": f"median {fmt_num(apply_s.median, 'ms')}, "
                                       f"max {fmt_num(apply_s.hi, 'ms')}"}, apply_s),
        Row("TUI apply + widgets processed their messages", {"result": f"median {fmt_num(rendered.median, 'ms')}, "
                                           f"max {fmt_num(rendered.hi, 'ms')}"}, rendered),
        Row("TUI process RSS", {"result": f"{rss_mb:,.0f} MB (peak "
                                          f"{data['peak_rss'] / 2**20:,.0f} MB)"}),
    ]
    targets = [
        Target(f"TUI update median at {data['queues']:,} queues", "< 100 ms",
               fmt_num(rendered.median, "ms"), verdict(rendered.median < 100)),
        Target(f"TUI RSS at {data['queues']:,} queues", "< 250 MB", f"{rss_mb:,.0f} MB",
               verdict(rss_mb < 250)),
    ]
    return rows, targets


async def run(bench: Bench) -> list[Section]:
    sizes = (100, 300) if bench.quick else (1_000, 5_000, 20_000)
    console_at = sizes[-1] if bench.quick else 5_000
    samples = 2 if bench.quick else max(5, bench.runs)
    sections: list[Section] = []
    user, password = bench.settings.credentials
    async with bench.vhost("monitor") as vhost_settings, httpx.AsyncClient(
        base_url=vhost_settings.management_url.rstrip("/"), auth=(user, password), timeout=120,
    ) as http:
        # 20,000 queues on a loaded machine take the management API more than the default
        # 10 s to list: a timeout here would measure the machine, not the code
        settings = replace(vhost_settings, http_timeout=120.0)
        made = 0
        for n in sizes:
            await make_queues(settings, made, n)
            made = n
            await wait_listed(http, settings.effective_vhost, n)
            try:
                sections.append(await _snapshot_section(bench, settings, http, n,
                                                        samples if n < 20_000 else 3))
            except Exception as exc:  # keep the sizes already measured
                sections.append(Section(key=f"monitor-{n}", title=f"Monitor snapshot, {n:,} "
                                        "queues", measures="failed", columns=["what"],
                                        rows=[Row(one_line(f"{type(exc).__name__}: {exc}"))]))
            if n == console_at:
                sections.append(await _console_section(bench, settings, n, samples))
    return sections


async def _console_section(bench: Bench, settings: Settings, big: int, samples: int) -> Section:
    section = Section(
        key="monitor-console", title=f"Console, {big:,} queues",
        measures=(
            "The Textual app run headless in its own process on a real snapshot, fed "
            "snapshots where every queue changed; time of `apply_snapshot` and of apply + "
            "every widget processing its pending messages (`pilot.pause(0)`; the target "
            "uses this one), and the process RSS afterwards. (The exporter's scrape is in "
            "each snapshot table above.)"
        ),
        columns=["what", "result", "ratio"],
    )
    rows, targets = await _tui_rows(settings, 3 if bench.quick else 20)
    section.rows += rows
    section.targets += targets
    return section


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run: python -m bench --only monitor")
