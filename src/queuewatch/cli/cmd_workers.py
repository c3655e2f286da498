"""``queuewatch workers [list]``: live workers from their heartbeats.

Subcommands are registered by the functions in :data:`SUBCOMMANDS`; add one (for instance
``workers terminate``) by writing a ``register_<name>(wsub)`` function and listing it there.
"""

from __future__ import annotations

import argparse

from queuewatch.cli.cmd_status import add_monitor_options, take_snapshot
from queuewatch.cli.common import format_table, non_negative_float, positive_int, print_json
from queuewatch.monitor.consuming import not_consuming_alert
from queuewatch.monitor.model import Snapshot, fmt_duration

#: How the table shows each :data:`~queuewatch.monitor.model.WorkerState`.
STATE_TEXT = {"up": "up", "not_consuming": "NOT CONSUMING", "unknown": "unknown",
              "stale": "stale", "gone": "gone", "hung": "HUNG"}


def render_workers(snap: Snapshot) -> str:
    if not snap.workers:
        return "no workers sent a heartbeat (are they running, on this vhost?)"
    rows = [
        [w.worker_id, w.host, w.pid, ",".join(w.queues), f"{w.cpu_percent:.0f}",
         f"{w.rss_bytes / 2**20:.0f}M", f"{len(w.in_flight)}/{w.concurrency}",
         f"{w.jobs_per_second:.1f}", w.errors, fmt_duration(w.heartbeat_age),
         STATE_TEXT.get(w.state, w.state)]
        for w in snap.workers
    ]
    table = format_table(
        ["WORKER", "HOST", "PID", "QUEUES", "CPU%", "RSS", "IN-FLIGHT", "JOBS/S", "ERRORS",
         "HEARTBEAT", "STATE"],
        rows, right={2, 4, 5, 6, 7, 8, 9},
    )
    notes = [a.reason for w in snap.workers if (a := not_consuming_alert(w)) is not None]
    return table if not notes else table + "\n\n" + "\n".join(notes)


def cmd_workers_list(args: argparse.Namespace) -> int:
    from queuewatch.monitor.jsonview import worker_to_json

    snap = take_snapshot(args)
    if getattr(args, "json", False):
        print_json([worker_to_json(w) for w in snap.workers])
    else:
        print(render_workers(snap))
    return 0


def register_list(wsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = wsub.add_parser("list", help="live workers (the default)")
    add_monitor_options(p, suppress=True)
    p.set_defaults(func=cmd_workers_list)


def cmd_workers_terminate(args: argparse.Namespace) -> int:
    """``workers terminate WORKER_ID | --pid PID`` (the core: queuewatch.operator)."""
    from queuewatch.audit import require_writable
    from queuewatch.broker.connect import connect
    from queuewatch.cli.common import run, settings_from_args
    from queuewatch.errors import ConfigError
    from queuewatch.operator import terminate_worker, worker_pid

    settings = settings_from_args(args)
    require_writable(settings, "terminate")
    if (args.worker_id is None) == (args.pid is None):
        raise ConfigError("give either WORKER_ID or --pid PID")
    known: frozenset[int] = frozenset()
    pid = args.pid
    if args.worker_id is not None:
        async def go() -> tuple[int, frozenset[int]]:
            conn = await connect(settings)
            try:
                return await worker_pid(conn, settings, args.worker_id)
            finally:
                await conn.close()

        pid, known = run(go)
    result = terminate_worker(settings, pid, grace=args.grace, known_pids=known,
                              worker_id=args.worker_id)
    print(f"process {result.pid} ended by {result.signal} after {result.seconds:.1f}s; "
          "the broker requeues the deliveries it held")
    return 0


def register_terminate(wsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from queuewatch.cli.common import add_connection_options, add_read_only_option

    p = wsub.add_parser(
        "terminate", help="end a hung worker process on this host (SIGTERM, then SIGKILL)",
        description="End a queuewatch worker process on this host: SIGTERM, then SIGKILL "
        "after --grace seconds. The broker requeues the deliveries it held. Refuses "
        "processes that are not queuewatch workers. Audited; refused with --read-only.",
    )
    p.add_argument("worker_id", nargs="?", metavar="WORKER_ID", help="from its heartbeat")
    p.add_argument("--pid", type=positive_int, help="the process id (for a worker that stopped beating)")
    p.add_argument("--grace", type=non_negative_float, default=10.0, help="seconds before SIGKILL (10)")
    add_connection_options(p)
    add_read_only_option(p)
    p.set_defaults(func=cmd_workers_terminate)


#: One function per ``workers`` subcommand; each adds its parser to the given subparsers.
SUBCOMMANDS = [register_list, register_terminate]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "workers", help="workers: host, pid, CPU, memory, in-flight, jobs/s, heartbeat age",
        description="Workers as their heartbeats describe them. A worker that beats but does "
        "not consume some queue it should (consumer cancelled by the broker, channel closed, "
        "queue missing or down) is NOT CONSUMING, with why and what to do; one whose heartbeats "
        "stopped while the broker still lists its connection is HUNG.",
    )
    add_monitor_options(p)
    p.set_defaults(func=cmd_workers_list)
    wsub = p.add_subparsers(dest="workers_command", metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(wsub)
