"""``queuewatch queues peek|purge|move|publish Q``: the console's actions on any queue.

The same core functions as the console (``p``, ``X``, ``m``, ``t`` in the Queues view): the
DLQ core reads (and puts back), purges and moves (publish with confirm, then ack) any queue;
the operator publishes a test job through the producer. Purge, move and publish are refused
with ``--read-only`` and written to the audit log; peek only reads (but each message it
reads is marked redelivered) and, like ``dlq list``, refuses a queue with consumers unless
``--force-read``.
"""

from __future__ import annotations

import argparse
import json
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from queuewatch.cli.common import (
    add_connection_options,
    add_read_only_option,
    add_skip_limit_check_option,
    format_table,
    positive_int,
    print_json,
    run,
    settings_from_args,
)
from queuewatch.errors import ConfigError

T = TypeVar("T")


def check_queue_name(name: str, what: str = "queue") -> str:
    """``name`` when it can name an existing queue, else one clear ConfigError (exit 2).

    Every ``queuewatch queues`` subcommand takes what RabbitMQ takes: any UTF-8 name up to
    255 bytes (``svc|orders``, ``orders (v2)``, ``заказы``, ``amq.gen-...``), as ``queuewatch
    dlq`` does; the length is the broker edge's own rule, the one the DLQ core applies
    (:func:`queuewatch.broker.fieldcodec.sendable_name`). Refused besides: an empty name
    (AMQP reads it as "the last queue declared on this channel"), one that is not UTF-8
    (undecodable bytes on the command line) and one with a control character (RabbitMQ would
    take it, but on a command line it is a paste accident). ``what`` names the argument in
    the message (``target queue``)."""
    from queuewatch.broker.fieldcodec import sendable_name

    if not name:
        raise ConfigError(f"{what} name must not be empty")
    shown = repr(name if len(name) <= 60 else name[:60] + "...")
    categories = {unicodedata.category(c) for c in name}
    if "Cs" in categories:
        raise ConfigError(f"{what} name {shown} is not valid UTF-8")
    if "Cc" in categories:
        first = next(c for c in name if unicodedata.category(c) == "Cc")
        raise ConfigError(f"{what} name {shown} contains a control character "
                          f"(U+{ord(first):04X})")
    why = sendable_name(name, "queue")
    if why is not None:
        raise ConfigError(f"{what} name {shown} is too long ({why})")
    return name


def with_queue(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]],
               action: str | None = None) -> T:
    """Connect and call ``fn`` with a :class:`~queuewatch.dlq.DeadLetterQueue` on
    ``args.queue`` itself (any queue: no DLQ name resolution)."""
    from queuewatch.audit import require_writable
    from queuewatch.broker.connect import connect
    from queuewatch.broker.management import ManagementClient
    from queuewatch.dlq import DeadLetterQueue
    from queuewatch.dlq.channel import close_quietly

    settings = settings_from_args(args)
    if action is not None:
        require_writable(settings, action)
    check_queue_name(args.queue)  # any name RabbitMQ takes; one clear line for a bad one

    async def go() -> T:
        conn = await connect(settings)
        try:
            async with ManagementClient(settings) as mgmt:
                return await fn(DeadLetterQueue(conn, mgmt, settings, args.queue,
                                                force=bool(getattr(args, "force_read", False))))
        finally:
            await close_quietly(conn)

    return run(go)


def cmd_peek(args: argparse.Namespace) -> int:
    page = with_queue(args, lambda q: q.peek(0, args.limit))
    if args.json:
        print_json({"queue": page.queue, "total": page.total,
                    "items": [{**dl.summary(), "redelivered": dl.redelivered,
                               "body": dl.body_pretty} for dl in page.items]})
        return 0
    print(f"{page.queue}: {page.total} messages, showing {len(page.items)} (read and put back: "
          "nothing removed, each one read is now marked redelivered)")
    if page.items:
        print(format_table(
            ["POS", "JOB", "REDELIVERED", "SIZE", "BODY"],
            [[dl.position, dl.job_id or dl.message_id or "-", "yes" if dl.redelivered else "no",
              dl.size, " ".join(dl.body_pretty.split())[:60]] for dl in page.items],
            right={0, 3}))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from queuewatch.cli.cmd_dlq import confirm

    async def act(q: Any) -> int | None:
        n = await q.depth()
        if not confirm(f"purge {n} messages from {q.queue}? This cannot be undone", args.yes):
            return None
        return int(await q.purge())

    n = with_queue(args, act, "purge")
    if n is None:
        print("nothing purged")
        return 1
    print(f"purged {n} messages from {args.queue}")
    return 0


def moved_report(result: Any, queue: str, to: str) -> str:
    """``moved 3 of 3 ...`` with what was held back (and why) and what is in doubt."""
    text = f"moved {result.replayed} of {result.matched} messages from {queue} to {to}"
    kept = Counter(s.why for s in result.skipped if s.why != "stopped")
    text += "; held back in " + queue + ": " + (
        ", ".join(f"{n} {why}" for why, n in kept.most_common()) or "0")
    text += f"; in doubt: {result.in_doubt}"
    if result.error:
        text += f"\nSTOPPED EARLY: {result.error}"
    return text


def cmd_move(args: argparse.Namespace) -> int:
    from queuewatch.cli.cmd_dlq import Progress, confirm

    check_queue_name(args.to, "target queue")
    if args.to == args.queue:
        raise ConfigError(f"cannot move {args.queue!r} to itself")

    async def act(q: Any) -> Any:
        n = await q.depth()
        if not confirm(f"move {n} messages from {q.queue} to the queue {args.to} (confirmed "
                       "publish, then ack)?", args.yes):
            return None
        with Progress("moving") as bar:
            return await q.move(args.to, limit=args.limit, progress=bar,
                                skip_limit_check=args.skip_limit_check)

    result = with_queue(args, act, "move")
    if result is None:
        print("nothing moved")
        return 1
    if args.json:
        print_json({"queue": args.queue, "to": args.to, "moved": result.replayed,
                    "matched": result.matched, "in_doubt": result.in_doubt,
                    "held_back": [{"job_id": s.job_id, "why": s.why, "detail": s.detail}
                                  for s in result.skipped], "error": result.error})
    else:
        print(moved_report(result, args.queue, args.to))
    return 0 if result.outcome == "ok" else 1


def cmd_publish(args: argparse.Namespace) -> int:
    from queuewatch.audit import require_writable
    from queuewatch.operator import publish_test_job

    payload = None
    if args.payload is not None:
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            raise ConfigError(f"--payload is not JSON: {exc}") from None
    settings = settings_from_args(args)
    require_writable(settings, "publish_test")
    check_queue_name(args.queue)
    published = run(lambda: publish_test_job(settings, args.queue, payload=payload))
    print(f"published job {published.job_id} to {args.queue} "
          f"(queuewatch jobs show {published.job_id})")
    return 0


def register(qsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def add(name: str, text: str, func: Callable[[argparse.Namespace], int],
            destructive: bool) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = qsub.add_parser(
            name, help=text, description=text + (". Audited; refused with --read-only."
                                                 if destructive else "."))
        q.add_argument("queue", metavar="QUEUE")
        add_connection_options(q)
        if destructive:
            add_read_only_option(q)
        q.set_defaults(func=func)
        return q

    force = "read the queue even when it has consumers (they miss its messages for a moment)"
    q = add("peek", "show QUEUE's first messages without removing them (read, then put back)",
            cmd_peek, False)
    q.add_argument("--limit", type=positive_int, default=20)
    q.add_argument("--force-read", action="store_true", help=force)
    q.add_argument("--json", action="store_true")
    q = add("purge", "remove every ready message of QUEUE", cmd_purge, True)
    q.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    q = add("move", "move QUEUE's messages to the queue TO, unchanged (publish with confirm, "
            "then ack: nothing is lost; what TO refuses stays)", cmd_move, True)
    q.add_argument("to", metavar="TO")
    q.add_argument("--limit", type=positive_int, help="move at most this many (from the head)")
    add_skip_limit_check_option(q, "move")
    q.add_argument("--force-read", action="store_true", help=force)
    q.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    q.add_argument("--json", action="store_true")
    q = add("publish", "publish a test job to QUEUE through the producer (an id, a confirm, "
            "job events)", cmd_publish, True)
    q.add_argument("--payload", metavar="JSON",
                   help="the job's JSON payload (default: a small test body)")
