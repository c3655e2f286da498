"""``queuewatch jobs stuck``: in-flight jobs older than their queue's threshold.

Subcommands are registered by the functions in :data:`SUBCOMMANDS`; add one (for instance
``jobs cancel``) by writing a ``register_<name>(jsub)`` function and listing it there.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from queuewatch.cli.cmd_status import add_monitor_options, take_snapshot
from queuewatch.cli.common import format_table, print_json
from queuewatch.cli.job_status import register_result, register_scheduled, register_show
from queuewatch.monitor.model import Snapshot, fmt_duration, plural


def render_stuck(snap: Snapshot) -> str:
    if not snap.stuck_jobs:
        return f"no stuck jobs ({plural(len(snap.workers), 'worker')} reporting)"
    return format_table(
        ["JOB", "QUEUE", "ATTEMPT", "WORKER", "HOST", "PID", "RUNNING", "THRESHOLD"],
        [[s.job_id, s.queue, s.attempt, s.worker_id, s.host, s.pid, fmt_duration(s.age),
          fmt_duration(s.threshold)] for s in snap.stuck_jobs],
        right={2, 5, 6, 7},
    )


def cmd_jobs_stuck(args: argparse.Namespace) -> int:
    snap = take_snapshot(args)
    if getattr(args, "json", False):
        print_json([asdict(s) for s in snap.stuck_jobs])
    else:
        print(render_stuck(snap))
    return 0


def register_stuck(jsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = jsub.add_parser(
        "stuck", help="in-flight jobs running longer than their queue's threshold",
        description="From worker heartbeats: jobs in flight longer than stuck_after (per queue "
        "in the topology, else thresholds.stuck_job_seconds).",
    )
    add_monitor_options(p)
    p.set_defaults(func=cmd_jobs_stuck)


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    """``jobs cancel JOB_ID [--worker ID]``: a running job through its worker (the operator
    core: queuewatch.operator); a queued, scheduled or retrying one with a tombstone
    (queuewatch.jobs.control), found from the job events."""
    from queuewatch.audit import require_writable
    from queuewatch.broker.connect import connect
    from queuewatch.cli.common import run, settings_from_args
    from queuewatch.cli.job_status import one_shot_jobs
    from queuewatch.jobs import JobState, check_job_id
    from queuewatch.jobs.control import cancel_pending
    from queuewatch.operator import CancelResult, cancel_job

    settings = settings_from_args(args)
    require_writable(settings, "cancel")
    check_job_id(args.job_id)

    async def go() -> CancelResult | str:
        if args.worker is None and settings.job_events:
            async with one_shot_jobs(settings) as jobs:
                status = await jobs.status(args.job_id)
                if status.state is not JobState.RUNNING:
                    done = await cancel_pending(jobs, args.job_id)
                    return done.detail
        conn = await connect(settings)
        try:
            return await cancel_job(conn, settings, args.job_id, args.worker)
        finally:
            await conn.close()

    result = run(go)
    if isinstance(result, str):
        print(f"cancelled: {result}")
        return 0
    print(f"asked worker {result.worker_id} to cancel job {result.job_id} "
          "(it goes to the DLQ with reason 'cancelled by operator')")
    return 0


def cmd_jobs_run_now(args: argparse.Namespace) -> int:
    from queuewatch.audit import require_writable
    from queuewatch.cli.common import run, settings_from_args
    from queuewatch.cli.job_status import one_shot_jobs
    from queuewatch.jobs import check_job_id
    from queuewatch.jobs.control import run_now

    settings = settings_from_args(args)
    require_writable(settings, "run-now")
    check_job_id(args.job_id)

    async def go() -> str:
        async with one_shot_jobs(settings) as jobs:
            return (await run_now(jobs, args.job_id)).detail

    print(run(go))
    return 0


def register_run_now(jsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from queuewatch.cli.common import add_connection_options, add_read_only_option

    p = jsub.add_parser(
        "run-now", help="run a scheduled (delayed) job now",
        description="Publishes the scheduled job's stored message to its queue now (same job "
        "id) and has workers skip the delayed copy when it comes up. Audited; refused with "
        "--read-only.")
    p.add_argument("job_id", metavar="JOB_ID")
    add_connection_options(p)
    add_read_only_option(p)
    p.set_defaults(func=cmd_jobs_run_now)


def register_cancel(jsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from queuewatch.cli.common import add_connection_options, add_read_only_option

    p = jsub.add_parser(
        "cancel", help="cancel a job: running (it is dead-lettered), queued, scheduled or retrying",
        description="A running job: a cancel command goes to the worker running JOB_ID (found "
        "from heartbeats unless --worker is given) and the job goes to the DLQ with reason "
        "'cancelled by operator'. A queued, scheduled or retrying job (from the job events): "
        "every worker skips it when it comes up, and its status is 'cancelled' at once. "
        "Audited; refused with --read-only.",
    )
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--worker", metavar="WORKER_ID", help="the worker holding the job")
    add_connection_options(p)
    add_read_only_option(p)
    p.set_defaults(func=cmd_jobs_cancel)


#: One function per ``jobs`` subcommand; each adds its parser to the given subparsers.
SUBCOMMANDS = [register_stuck, register_cancel, register_run_now, register_show, register_result,
               register_scheduled]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("jobs", help="a job by id (status, timeline, result), scheduled and stuck jobs, cancel")
    jsub = p.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND")
    jsub.required = True
    for add in SUBCOMMANDS:
        add(jsub)
