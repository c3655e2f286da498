"""``queuewatch queues pause|resume|limit Q``: durable control of pending work on a queue
(``peek|purge|move|publish``: :mod:`queuewatch.cli.cmd_queue_ops`).

The operator core does the work (:func:`queuewatch.operator.pause_queue` and friends): a
record in the queue-state stream that every worker reads (running ones at once, new ones at
start). Audited; refused with ``--read-only``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from queuewatch.errors import ConfigError

if TYPE_CHECKING:
    from queuewatch.broker.types import Connection


def _rate(text: str) -> float | None:
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"rate must be a number of jobs per second or 'off' (got {text!r})") from None
    from queuewatch.events.queuestate import check_rate
    return check_rate(value)


async def _require_queue(conn: Connection, queue: str) -> None:
    """One clear NotFound for a queue that does not exist (a typo would otherwise pause or
    limit nothing, and say it did)."""
    from queuewatch.broker.errors import ChannelNotFound, close_channel
    from queuewatch.errors import NotFound

    channel = await conn.channel()
    try:
        await channel.declare_queue(queue, passive=True)
    except ChannelNotFound:
        raise NotFound(f"queue {queue!r} does not exist in this vhost") from None
    finally:
        await close_channel(channel)


def cmd_queues(args: argparse.Namespace) -> int:
    from queuewatch.audit import require_writable
    from queuewatch.broker.connect import connect
    from queuewatch.cli.cmd_queue_ops import check_queue_name
    from queuewatch.cli.common import run, settings_from_args
    from queuewatch.events.queuestate import LimitSpec
    from queuewatch.operator import limit_queue, pause_queue, resume_queue

    settings = settings_from_args(args)
    action = args.queues_command
    require_writable(settings, f"queue_{action}")
    check_queue_name(args.queue)  # any name RabbitMQ takes; one clear line for a bad one
    limit = None
    if action == "limit":
        per_key = _rate(args.per_key) if args.per_key is not None else None
        limit = LimitSpec(_rate(args.rate), per_key, args.key)

    async def go() -> None:
        conn = await connect(settings)
        try:
            await _require_queue(conn, args.queue)
            if action == "pause":
                await pause_queue(conn, settings, args.queue)
            elif action == "resume":
                await resume_queue(conn, settings, args.queue)
            else:
                assert limit is not None
                await limit_queue(conn, settings, args.queue, limit)
        finally:
            await conn.close()

    run(go)
    if action == "pause":
        print(f"paused {args.queue!r}: workers take no new jobs from it (running ones finish)")
    elif action == "resume":
        print(f"resumed {args.queue!r}: workers consume it again")
    else:
        assert limit is not None
        parts = [f"{limit.rate:g} jobs/s over all workers" if limit.rate else "no queue-wide limit"]
        if limit.per_key:
            parts.append(f"{limit.per_key:g} jobs/s per {limit.key}")
        print(f"limit of {args.queue!r}: {', '.join(parts)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from queuewatch.cli.common import add_connection_options, add_read_only_option

    p = sub.add_parser("queues", help="pause, resume or rate-limit a queue over every worker; "
                       "peek, purge, move, publish a test job")
    qsub = p.add_subparsers(dest="queues_command", metavar="SUBCOMMAND")
    qsub.required = True
    helps = {
        "pause": "every worker stops taking jobs from QUEUE (running ones finish); durable",
        "resume": "workers consume QUEUE again",
        "limit": "set QUEUE's queue-wide rate limit (jobs/s over every worker) at run time",
    }
    for name, text in helps.items():
        q = qsub.add_parser(name, help=text, description=text + ". Audited; refused with "
                            "--read-only.")
        q.add_argument("queue", metavar="QUEUE")
        if name == "limit":
            q.add_argument("rate", metavar="RATE", help="jobs per second (> 0), or 'off'")
            q.add_argument("--per-key", metavar="RATE",
                           help="also at most RATE jobs/s per key (see --key)")
            q.add_argument("--key", metavar="payload:FIELD|header:NAME",
                           help="where a job's key is, for --per-key")
        add_connection_options(q)
        add_read_only_option(q)
        q.set_defaults(func=cmd_queues)
    from queuewatch.cli import cmd_queue_ops

    cmd_queue_ops.register(qsub)
