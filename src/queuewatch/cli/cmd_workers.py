"""``queuewatch workers [list]``: live workers from their heartbeats.

Subcommands are registered by the functions in :data:`SUBCOMMANDS`; add one (for instance
``workers terminate``) by writing a ``register_<name>(wsub)`` function and listing it there.
"""

from __future__ import annotations

import argparse

from queuewatch.cli.cmd_status import add_monitor_options, take_snapshot
from queuewatch.cli.common import format_table, print_json
from queuewatch.monitor.model import Snapshot, WorkerStats, fmt_duration


def _state(w: WorkerStats, stale_after: float) -> str:
    if w.hung:
        return "HUNG"
    if w.heartbeat_age > stale_after:
        return "gone" if w.connection_open is False else "stale"
    return "up"


def render_workers(snap: Snapshot, stale_after: float) -> str:
    if not snap.workers:
        return "no workers sent a heartbeat (are they running, on this vhost?)"
    rows = [
        [w.worker_id, w.host, w.pid, ",".join(w.queues), f"{w.cpu_percent:.0f}",
         f"{w.rss_bytes / 2**20:.0f}M", f"{len(w.in_flight)}/{w.concurrency}",
         f"{w.jobs_per_second:.1f}", w.errors, fmt_duration(w.heartbeat_age),
         _state(w, stale_after)]
        for w in snap.workers
    ]
    return format_table(
        ["WORKER", "HOST", "PID", "QUEUES", "CPU%", "RSS", "IN-FLIGHT", "JOBS/S", "ERRORS",
         "HEARTBEAT", "STATE"],
        rows, right={2, 4, 5, 6, 7, 8, 9},
    )


def cmd_workers_list(args: argparse.Namespace) -> int:
    from queuewatch.cli.common import settings_from_args
    from queuewatch.monitor.jsonview import worker_to_json

    snap = take_snapshot(args)
    if getattr(args, "json", False):
        print_json([worker_to_json(w) for w in snap.workers])
    else:
        stale = settings_from_args(args).thresholds.heartbeat_stale_seconds
        print(render_workers(snap, stale))
    return 0


def register_list(wsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = wsub.add_parser("list", help="live workers (the default)")
    add_monitor_options(p, suppress=True)
    p.set_defaults(func=cmd_workers_list)


#: One function per ``workers`` subcommand; each adds its parser to the given subparsers.
SUBCOMMANDS = [register_list]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "workers", help="workers: host, pid, CPU, memory, in-flight, jobs/s, heartbeat age",
        description="Workers as their heartbeats describe them. A worker whose heartbeats "
        "stopped while the broker still lists its connection is shown HUNG.",
    )
    add_monitor_options(p)
    p.set_defaults(func=cmd_workers_list)
    wsub = p.add_subparsers(dest="workers_command", metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(wsub)
