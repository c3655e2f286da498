"""``queuewatch jobs show|result|scheduled``: a job's status, timeline and result by id,
from the job events stream (see :mod:`queuewatch.jobs`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from queuewatch.cli.common import add_connection_options, format_table, print_json, run, settings_from_args

if TYPE_CHECKING:
    from queuewatch.config import Settings
    from queuewatch.jobs import Jobs

#: Seconds a command gives the broker to connect and the stream to be read up to now.
START_TIMEOUT = 60.0
#: Least time ``jobs result --timeout S`` gives that start, however small S (a connection
#: and a marker's round trip take milliseconds when the broker answers).
MIN_START = 1.0


@contextlib.asynccontextmanager
async def one_shot_jobs(settings: Settings, timeout: float = START_TIMEOUT) -> AsyncIterator[Jobs]:
    """A started :class:`~queuewatch.jobs.Jobs` for one command: one round of connect
    attempts, as every other command (a broker that refuses or does not answer is said at
    once; it was waited out for 60 s), then the stream read up to now within ``timeout``."""
    from queuewatch.jobs import Jobs

    jobs = Jobs(settings)
    try:
        await jobs.start(timeout, rounds=1)
        yield jobs
    finally:
        await jobs.close()


def _with_jobs(args: argparse.Namespace, fn: Any, *, timeout: float | None = None) -> Any:
    """``fn(jobs)`` on a started :class:`~queuewatch.jobs.Jobs`. ``timeout``: the whole
    call's bound, the start included (it gets at least :data:`MIN_START` s); ``fn`` is
    then called with the time left."""
    settings = settings_from_args(args)

    async def go() -> Any:
        loop = asyncio.get_running_loop()
        start = START_TIMEOUT if timeout is None else min(START_TIMEOUT, max(timeout, MIN_START))
        began = loop.time()
        async with one_shot_jobs(settings, start) as jobs:
            if timeout is None:
                return await fn(jobs)
            return await fn(jobs, max(timeout - (loop.time() - began), 0.0))

    return run(go)


def cmd_show(args: argparse.Namespace) -> int:
    from queuewatch.jobs import JobStatus, check_job_id
    from queuewatch.jobs.timeline import render

    check_job_id(args.job_id)

    async def ask(jobs: Any) -> JobStatus:
        status: JobStatus = await jobs.status(args.job_id)
        return status

    status = _with_jobs(args, ask)
    if args.json:
        print_json(status.to_json())
    else:
        print(render(status, tracebacks=args.tracebacks))
    return 0 if status.known else 1


def cmd_result(args: argparse.Namespace) -> int:
    import json

    from queuewatch.jobs import JobFailed, JobUnknown, ResultExpired, ResultTimeout, check_job_id

    check_job_id(args.job_id)
    if args.timeout is not None and not args.timeout >= 0:
        print("queuewatch: --timeout must be a number of seconds >= 0", file=sys.stderr)
        return 2

    async def ask(jobs: Any, left: float | None = None) -> Any:
        return await jobs.result(args.job_id, timeout=left)

    try:  # (--timeout bounds the whole command: a broker that does not answer too)
        value = _with_jobs(args, ask, timeout=args.timeout)
    except (JobFailed, JobUnknown, ResultExpired, ResultTimeout) as exc:
        print(f"queuewatch: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(value, indent=2, sort_keys=True))
    return 0


def cmd_scheduled(args: argparse.Namespace) -> int:
    from queuewatch.jobs.timeline import _in, when

    async def ask(jobs: Any) -> Any:
        return await jobs.scheduled(args.queue, limit=args.limit)

    rows = _with_jobs(args, ask)
    if args.json:
        print_json([s.to_json(timeline=False) for s in rows])
        return 0
    if not rows:
        print("no scheduled or retrying jobs" + (f" for {args.queue!r}" if args.queue else ""))
        return 0
    print(format_table(
        ["JOB", "QUEUE", "STATE", "ATTEMPT", "DUE", ""],
        [[s.job_id, s.queue, s.state.value, s.attempt or "-", when(s.due_ms), _in(s.due_ms)]
         for s in rows], right={3}))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (got {text})")
    return value


def register_show(jsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = jsub.add_parser(
        "show", help="a job's state and timeline by id (from the job events stream)",
        description="State (queued, scheduled, running, retrying, succeeded, dead-lettered, "
        "cancelled, or unknown for an id never recorded or past retention) and every event: "
        "attempts with their worker, duration and error. Exit 1 when the id is unknown.")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tracebacks", action="store_true", help="show each failed attempt's traceback")
    add_connection_options(p)
    p.set_defaults(func=cmd_show)


def register_result(jsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = jsub.add_parser(
        "result", help="wait for a job to finish and print its result (JSON)",
        description="Waits for the outcome without polling the broker. Exit 1 when the job "
        "was dead-lettered or cancelled (its error on stderr), is unknown, its result expired "
        "or the timeout passed.")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="give up after this long (default: wait)")
    add_connection_options(p)
    p.set_defaults(func=cmd_result)


def register_scheduled(jsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = jsub.add_parser(
        "scheduled", help="jobs waiting for their time (delayed, or retrying), soonest first")
    p.add_argument("--queue", metavar="QUEUE", help="only jobs for this queue")
    p.add_argument("--limit", type=_positive_int, default=1000, help="at most this many (default 1000)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_connection_options(p)
    p.set_defaults(func=cmd_scheduled)
