"""``queuewatch status [--json] [--watch]`` and ``queuewatch alerts``.

The shared pieces of the monitoring commands (options, one snapshot) live here too;
``cmd_workers`` and ``cmd_jobs`` import them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping

from queuewatch.aio import wait_for
from queuewatch.cli.common import (
    add_connection_options,
    format_table,
    non_negative_float,
    non_negative_int,
    positive_float,
    print_json,
    run,
    settings_from_args,
)
from queuewatch.config import Settings
from queuewatch.errors import QueuewatchError
from queuewatch.monitor.history import INTERNAL_PREFIXES
from queuewatch.monitor.model import NodeStats, QueueStats, Snapshot, fmt_duration, plural

log = logging.getLogger(__name__)


def add_monitor_options(p: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """Options of every monitoring command (``suppress``: for a sub-subcommand)."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--json", action="store_true", default=d(False),
                   help="print JSON (field names documented in docs/monitoring.md)")
    p.add_argument("--listen", type=non_negative_float, metavar="SECONDS", default=d(None),
                   help="listen this long for worker heartbeats before the snapshot (default 1.5)")
    p.add_argument("--no-heartbeats", action="store_true", default=d(False),
                   help="do not connect over AMQP; queues only, no workers or stuck jobs")
    p.add_argument("--topology", metavar="FILE", default=d(None),
                   help="topology file, for per-queue stuck_after thresholds")
    p.add_argument("--all-vhosts", action="store_true", default=d(False),
                   help="look at every vhost instead of one")
    if not suppress:
        add_connection_options(p)


def take_snapshot(args: argparse.Namespace, need_heartbeats: bool = True) -> Snapshot:
    """One snapshot as the command-line options ask for it."""
    from queuewatch.monitor.session import DEFAULT_LISTEN, open_monitor
    from queuewatch.topology import load_topology

    settings = settings_from_args(args)
    topo_path = getattr(args, "topology", None)
    topology = load_topology(topo_path) if topo_path else None
    beats = need_heartbeats and not getattr(args, "no_heartbeats", False)
    listen = getattr(args, "listen", None)

    all_vhosts = bool(getattr(args, "all_vhosts", False))

    async def go() -> Snapshot:
        async with open_monitor(
            settings, heartbeats=beats, listen=DEFAULT_LISTEN if listen is None else listen,
            topology=topology, all_vhosts=all_vhosts,
        ) as monitor:
            if all_vhosts or not settings.job_events:
                return await monitor.poll()
            async with scheduled_counts(settings) as counts:
                monitor.monitor.scheduled = counts
                return await monitor.poll()

    return run(go)


@contextlib.asynccontextmanager
async def scheduled_counts(settings: Settings) -> AsyncIterator[Callable[[], Mapping[str, int]] | None]:
    """The job events' count of scheduled jobs per queue, or None when they cannot be read
    within :data:`JOBS_WAIT` (the column then says ``?``: status never waits long for it)."""
    from queuewatch.jobs import Jobs

    jobs = Jobs(settings, sync_timeout=JOBS_WAIT)
    try:
        await wait_for(jobs.start(JOBS_WAIT), JOBS_WAIT + 1)
    except (QueuewatchError, TimeoutError) as exc:
        log.debug("no scheduled counts: %s", exc)
        await jobs.close()
        yield None
        return
    try:
        yield jobs.scheduled_counts
    finally:
        await jobs.close()


#: Longest ``status`` waits for the job events (seconds).
JOBS_WAIT = 5.0


# -- status ------------------------------------------------------------------------------

def _rate(v: float) -> str:
    return f"{v:.1f}"


def _queue_row(q: QueueStats) -> list[object]:
    if q.down:  # numbers unknown, never 0: say so in every column that would show one
        return [q.name, "DOWN", "?", q.consumers, "?" if q.max_length else "-", "?", "?",
                "?", "?", "-" if q.dlq_depth is None else q.dlq_depth]
    fill = q.fill
    out = _rate(q.ack_rate + q.no_ack_rate)
    return [
        f"{q.name} [paused]" if q.paused else q.name, q.ready, q.unacked, q.consumers,
        "-" if fill is None else f"{fill:.0%}",
        fmt_duration(q.oldest_age), fmt_duration(q.drain_eta),
        _rate(q.publish_rate), out if q.rate_limit is None else f"{out}/{q.rate_limit:g}",
        "-" if q.dlq_depth is None else q.dlq_depth,
    ]


def _node_text(n: NodeStats) -> str:
    text = f"{n.name}: {'up' if n.running else 'DOWN'}"
    text += (" MEM-ALARM" if n.mem_alarm else "") + (" DISK-ALARM" if n.disk_alarm else "")
    if n.partitions:
        text += f" PARTITIONED from {','.join(n.partitions)}"
    return text


def render_status(snap: Snapshot, internal: bool = False) -> str:
    """The status table; queuewatch's own queues (delay levels, due queues, streams) and
    ``amq.gen-*`` only with ``internal`` (as in the console, ``i``), counted in the head."""
    queues = list(snap.queues) if internal else [
        q for q in snap.queues if not q.name.startswith(INTERNAL_PREFIXES)]
    hidden = len(snap.queues) - len(queues)
    rows = [_queue_row(q) for q in queues]
    headers = ["QUEUE", "READY", "UNACKED", "CONSUMERS", "FILL", "OLDEST", "DRAIN-ETA", "IN/S",
               "OUT/S", "DLQ"]
    right = {1, 2, 3, 4, 5, 6, 7, 8, 9}
    if any(q.scheduled for q in queues):  # only when some are waiting: keep it narrow
        headers.append("SCHED")
        right.add(len(headers) - 1)
        rows = [[*row, "-" if q.scheduled is None else q.scheduled]
                for q, row in zip(queues, rows, strict=True)]
    if snap.vhost is None:  # every vhost: say which
        headers.insert(0, "VHOST")
        right = {i + 1 for i in right}
        rows = [[q.vhost, *row] for q, row in zip(queues, rows, strict=True)]
    when = time.strftime("%H:%M:%S", time.localtime(snap.taken_at))
    shown = f"{len(queues)} queues" + (f" ({hidden} internal hidden: --internal)" if hidden else "")
    head = (f"{snap.broker.url}  vhost {snap.vhost or '(all)'}  RabbitMQ {snap.broker.version}  "
            f"{when}  {shown}  {plural(len(snap.workers), 'worker')}")
    table = format_table(headers, rows, right=right) if rows else "(no queues)"
    nodes = "  ".join(_node_text(n) for n in snap.nodes) or (
        f"(not shown: {snap.nodes_hidden})" if snap.nodes_hidden else "")
    if snap.nodes and snap.broker.node:
        nodes += f"  (as seen from {snap.broker.node})"
    downs = "".join(f"\ndown: {q.ref(snap.vhost is None)}: {q.down_reason}"
                    for q in snap.queues if q.down)
    n = len(snap.alerts)
    alerts = f"{n} alert{'s' if n > 1 else ''} (queuewatch alerts)" if n else "no alerts"
    return f"{head}\n{table}\nnodes: {nodes}{downs}\n{alerts}"


def render_alerts(snap: Snapshot) -> str:
    if not snap.alerts:
        return "no alerts"
    return format_table(
        ["SEVERITY", "KIND", "TARGET", "REASON"],
        [[a.severity, a.kind, a.target, a.reason] for a in snap.alerts],
    )


def cmd_status(args: argparse.Namespace) -> int:
    from queuewatch.monitor.jsonview import snapshot_to_json

    if not args.watch:
        snap = take_snapshot(args)
        if args.json:
            print_json(snapshot_to_json(snap))
        else:
            print(render_status(snap, getattr(args, "internal", False)))
        return 0
    # --watch --json prints JSON lines: one compact document per snapshot
    return _watch(args, lambda s: print(json.dumps(snapshot_to_json(s), sort_keys=True))
                  if args.json else _print_screen(render_status(s, getattr(args, "internal", False))))


def _print_screen(text: str) -> None:
    if sys.stdout.isatty():
        sys.stdout.write("\033[H\033[2J")
    print(text, flush=True)


def _watch(args: argparse.Namespace, show: Callable[[Snapshot], None]) -> int:
    """Reprint every interval until Ctrl-C; polls never overlap."""
    from queuewatch.monitor.core import interval_warning
    from queuewatch.monitor.pacing import Pace
    from queuewatch.monitor.session import DEFAULT_LISTEN, open_monitor
    from queuewatch.topology import load_topology

    settings = settings_from_args(args)
    interval = args.interval if args.interval is not None else settings.poll_interval
    warning = interval_warning(interval)
    if warning:
        print(f"queuewatch: warning: {warning}", file=sys.stderr)
    topology = load_topology(args.topology) if args.topology else None
    listen = DEFAULT_LISTEN if args.listen is None else args.listen

    async def go() -> None:
        async with open_monitor(
            settings, heartbeats=not args.no_heartbeats, listen=listen, topology=topology,
            all_vhosts=args.all_vhosts,
        ) as monitor:
            count = 0

            def on_snapshot(s: Snapshot) -> None:
                nonlocal count
                show(s)
                sys.stdout.flush()
                count += 1
                if args.count and count >= args.count:
                    stop.set()

            said: list[bool] = [False]

            def on_pace(p: Pace) -> None:  # say when the interval stretches, and when back
                if p.stretched != said[0]:
                    print(f"queuewatch: {p.text() or f'polling every {p.interval:g}s again'}",
                          file=sys.stderr)
                said[0] = p.stretched

            stop = asyncio.Event()
            await monitor.run(on_snapshot, interval, stop=stop, on_pace=on_pace)

    run(go)
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    snap = take_snapshot(args)
    if args.json:
        print_json([asdict(a) for a in snap.alerts])
    else:
        print(render_alerts(snap))
    return 1 if args.check and snap.alerts else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "status", help="queues: depth, consumers, lag, ETAs, DLQs (one shot or --watch)",
        description="Show every queue of the vhost: ready/unacked, consumers, fill of the cap, "
        "age of the oldest ready message ('unknown' when publishers set no timestamp), time "
        "to drain ('never' while growing) and DLQ depth.",
    )
    add_monitor_options(p)
    p.add_argument("--watch", action="store_true", help="reprint every --interval seconds")
    p.add_argument("--internal", action="store_true",
                   help="also list queuewatch's own queues (delay levels, due queues, streams) "
                        "and amq.gen-* (--json always has every queue)")
    p.add_argument("--interval", type=positive_float, metavar="SECONDS",
                   help="seconds between polls with --watch (default: poll_interval, 5)")
    p.add_argument("--count", type=non_negative_int, default=0, metavar="N",
                   help="with --watch: stop after N snapshots (default: until Ctrl-C)")
    p.set_defaults(func=cmd_status)

    a = sub.add_parser("alerts", help="what needs attention, with a reason for each",
                       description="Alerts from the current snapshot (thresholds from settings).")
    add_monitor_options(a)
    a.add_argument("--check", action="store_true", help="exit 1 when there is any alert")
    a.set_defaults(func=cmd_alerts)
