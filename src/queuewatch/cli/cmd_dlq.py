"""``queuewatch dlq list|show|causes|replay|delete|purge|export|import``.

QUEUE is the queue holding the dead letters; a job queue name (``jobs``) means its DLQ
(``jobs.dlq``) when that exists. Destructive subcommands take ``--read-only`` (refused
before anything touches the broker) and are written to the audit log.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from queuewatch.cli.common import (
    add_connection_options,
    add_read_only_option,
    add_skip_limit_check_option,
    format_table,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    print_json,
    run,
    settings_from_args,
)
from queuewatch.config import Settings

T = TypeVar("T")


class Progress:
    """A progress bar on stderr, only when stderr is a terminal (else silent)."""

    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        width = 30
        filled = min(width, width * done // total)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def confirm(question: str, yes: bool) -> bool:
    """True with ``--yes``; asks on a terminal; refuses (exit 2) without a terminal."""
    from queuewatch.errors import QueuewatchError

    if yes:
        return True
    if not sys.stdin.isatty():
        raise QueuewatchError(f"{question.rstrip('?')}: refused without a terminal; pass --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def with_dlq(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Connect, build the :class:`DeadLetterQueue` for ``args.queue`` and call ``fn(dlq)``.

    ``args.queue`` is resolved as :func:`~queuewatch.dlq.discover.resolve_dlq` says (``jobs``
    means ``jobs.dlq``; a job queue means the queue its dead letters reach)."""
    from queuewatch.broker.connect import connect
    from queuewatch.broker.management import ManagementClient
    from queuewatch.dlq import DeadLetterQueue
    from queuewatch.dlq.channel import close_quietly
    from queuewatch.dlq.discover import resolve_dlq

    settings = settings_from_args(args)

    async def go() -> T:
        conn = await connect(settings)
        try:
            async with ManagementClient(settings) as mgmt:
                queue = await resolve_dlq(conn, mgmt, settings.effective_vhost, args.queue)
                dlq = DeadLetterQueue(conn, mgmt, settings, queue,
                                      force=bool(getattr(args, "force_read", False)))
                try:
                    return await fn(dlq)
                finally:  # on stderr: stdout may be JSON
                    for moved in dlq.moved_back:
                        print(f"queuewatch: {moved.describe()}", file=sys.stderr)
        finally:
            await close_quietly(conn)

    return run(go)


def check_writable(args: argparse.Namespace, action: str) -> Settings:
    from queuewatch.audit import require_writable

    settings = settings_from_args(args)
    require_writable(settings, action)
    return settings


def non_empty(text: str) -> str:
    """A filter value: an empty one (``--text "$UNSET"``) would select every dead letter, or
    those without the field, instead of none: refused."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def filter_from_args(args: argparse.Namespace) -> Any:
    from queuewatch.dlq import DeadLetterFilter
    from queuewatch.errors import ConfigError

    if args.min_age is not None and args.max_age is not None and args.min_age > args.max_age:
        raise ConfigError(f"--min-age {args.min_age:g} is more than --max-age {args.max_age:g}: "
                          "no dead letter can match")
    return DeadLetterFilter(
        job_ids=frozenset(getattr(args, "job", None) or ()), error_type=args.error_type,
        reason=args.reason, text=args.text, min_age=args.min_age, max_age=args.max_age,
        cause=args.cause,
    )


def add_filter_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filter (all given criteria must match)")
    g.add_argument("--job", action="append", type=non_empty, metavar="JOB_ID",
                   help="a job id (repeatable)")
    g.add_argument("--error-type", type=non_empty, metavar="TYPE",
                   help="error type, e.g. TimeoutError")
    g.add_argument("--reason", type=non_empty,
                   help="death reason, e.g. failed, rejected, 'cancelled by operator'")
    g.add_argument("--text", type=non_empty, help="text in the body, error message or job id")
    g.add_argument("--min-age", type=non_negative_float, metavar="SECONDS",
                   help="dead at least this long")
    g.add_argument("--max-age", type=non_negative_float, metavar="SECONDS",
                   help="dead at most this long")
    g.add_argument("--cause", type=non_empty, metavar="CAUSE",
                   help="one cause, as `dlq causes` and the console's grouping (b) label it: "
                   "error type + message shape, e.g. 'ValueError: bad input <n>'")


# -- list / show ----------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from queuewatch.dlq.model import format_ms

    flt = filter_from_args(args)

    async def fetch(dlq: Any) -> tuple[str, int, list[Any], list[tuple[str, int]]]:
        if flt.is_empty:
            page = await dlq.peek(args.offset, args.limit)
            total, items = page.total, list(page.items)
        else:
            found = await dlq.find(flt, max_results=args.offset + args.limit)
            total, items = await dlq.depth(), found[args.offset:]
        return dlq.queue, total, items, await dlq.held_elsewhere()

    queue, total, items, elsewhere = with_dlq(args, fetch)
    if args.json:
        print_json({"queue": queue, "total": total, "offset": args.offset,
                    "items": [d.summary() for d in items],
                    "held_elsewhere": [{"queue": q, "count": n} for q, n in elsewhere]})
        return 0
    print(f"{queue}: {total} dead letters" + (f", showing {len(items)}" if items else ""))
    for held_queue, count in elsewhere:
        print(f"  and {count} held back in {held_queue} by a shovel replay (in progress or "
              "interrupted): they return to the tail of this DLQ when it ends, or with the "
              "next replay")
    if items:
        print(format_table(
            ["POS", "JOB", "REASON", "ERROR", "ATT", "REPLAYS", "DIED", "ROUTE"],
            [[d.position, d.job_id, d.death.reason, d.death.error_type, d.death.attempts,
              d.replay_count, format_ms(d.death.last_death_ms),
              d.death.route.describe() if d.death.route else "?"] for d in items],
            right={0, 4, 5},
        ))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from queuewatch.dlq.decode import jsonable
    from queuewatch.dlq.model import format_ms
    from queuewatch.errors import NotFound

    dl = with_dlq(args, lambda dlq: dlq.get(args.job_id))
    if dl is None:
        raise NotFound(f"no dead letter with job id {args.job_id!r} in {args.queue!r}")
    if args.json:
        print_json({**dl.summary(), "death": asdict(dl.death), "headers": jsonable(dl.headers),
                    "properties": jsonable(dl.properties), "body": dl.body_pretty})
        return 0
    d = dl.death
    rows = [("job id", dl.job_id), ("position", dl.position), ("reason", d.reason),
            ("error", f"{d.error_type}: {d.error_message}" if d.error_type else d.error_message),
            ("attempts", d.attempts), ("replays", dl.replay_count),
            ("route", d.route.describe() if d.route else "unknown"),
            ("original queue", d.original_queue), ("first death", format_ms(d.first_death_ms)),
            ("last death", format_ms(d.last_death_ms)), ("death info from", d.source),
            ("body", f"{dl.size} bytes, {dl.body_kind}")]
    for key, value in rows:
        print(f"{key + ':':<16} {'-' if value is None else value}")
    if d.traceback:
        print("\ntraceback:\n" + d.traceback)
    print("\nheaders:")
    for key, value in jsonable(dl.headers).items():
        print(f"  {key}: {value}")
    print("\nbody:\n" + dl.body_pretty)
    return 0


# -- replay / delete / purge / export / import -------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    flt = filter_from_args(args)
    if not args.dry_run:
        check_writable(args, "replay")
    opts = {"rate": args.rate, "force": args.force, "max_replays": args.max_replays,
            "limit": args.limit, "skip_limit_check": args.skip_limit_check}
    via = {"via_shovel": True if args.via_shovel else False if args.per_message else None}

    async def act(dlq: Any) -> Any:
        if args.dry_run or not args.yes:
            dry = await dlq.replay(flt, dry_run=True, **opts)
            if args.dry_run:
                return dry
            _print_replay(dry, json_out=False)
            if not confirm(f"replay {dry.replayed} dead letters from {dlq.queue}?", args.yes):
                return None
        with Progress("replaying") as bar:
            return await dlq.replay(flt, progress=bar, **opts, **via)

    result = with_dlq(args, act)
    if result is None:
        print("nothing replayed")
        return 1
    _print_replay(result, args.json)
    return 0 if result.outcome == "ok" else 1


def _print_replay(result: Any, json_out: bool) -> None:
    if json_out:
        print_json({**asdict(result), "outcome": result.outcome, "rate": result.rate,
                    "not_scanned": result.not_scanned})
        return
    verb = "would replay" if result.dry_run else "replayed"
    how = " (moved by a RabbitMQ shovel)" if result.via == "shovel" else ""
    print(f"{result.queue}: scanned {result.scanned}, matched {result.matched}, "
          f"{verb} {result.replayed} in {result.elapsed:.1f}s{how}")
    kept = [s for s in result.skipped if s.why != "stopped"]  # those are in "in doubt"
    for s in kept[:50]:
        print(f"  kept {s.job_id} (position {s.position}): {s.why} {s.detail}")
    if len(kept) > 50:
        print(f"  ... and {len(kept) - 50} more kept in the DLQ")
    if result.unchecked_sent:
        print(f"  {verb} {result.unchecked_sent} without their destination's length limit read "
              "(management API unreadable; --skip-limit-check)")
    if result.error:
        print(f"  STOPPED EARLY: {result.error}")
    if result.in_doubt:
        print(f"  in doubt: up to {result.in_doubt} dead letters may be both back in their "
              "queue and still in the DLQ (republished without a confirm, acked just before "
              "the link broke, or given back by a shovel as it ended: they are at the DLQ's head, "
              "marked redelivered): a re-run replays them again; duplicates, never losses")
    if result.link_lost:
        print("  if RabbitMQ itself crashed (rather than the link breaking or a clean stop), it "
              "may also have forgotten acks not yet on disk: dead letters replayed before the "
              "crash can be back in the DLQ too (duplicates, never losses)")
    if result.error and result.not_scanned:
        where = "deleted with the DLQ" if result.dlq_deleted else "they stay in the DLQ"
        print(f"  not looked at: {result.not_scanned} ({where})")


def cmd_delete(args: argparse.Namespace) -> int:
    job_ids = [*args.job_ids, *(args.job or ())]
    if not job_ids:
        args.subparser.error("give the job ids to delete (JOB_ID ... or --job JOB_ID)")
    check_writable(args, "delete")
    removed = with_dlq(args, lambda dlq: dlq.delete(job_ids))
    missing = sorted(set(job_ids) - {r for r in removed if r})
    print(f"deleted {len(removed)} dead letters" + (f"; not found: {', '.join(missing)}" if missing else ""))
    return 0 if not missing else 1


def cmd_purge(args: argparse.Namespace) -> int:
    check_writable(args, "purge")

    async def act(dlq: Any) -> int | None:
        count = await dlq.depth()
        if not confirm(f"purge {count} dead letters from {dlq.queue}? This cannot be undone", args.yes):
            return None
        return int(await dlq.purge())

    count = with_dlq(args, act)
    if count is None:
        print("nothing purged")
        return 1
    print(f"purged {count} dead letters")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    flt = filter_from_args(args)
    with Progress("exporting") as bar:
        count = with_dlq(args, lambda dlq: dlq.export(args.file, progress=bar, flt=flt))
    which = "" if flt.is_empty else f" ({describe_filter(flt)})"
    print(f"exported {count} dead letters{which} to {args.file}")
    return 0


def describe_filter(flt: Any) -> str:
    return ", ".join(f"{k} {v!r}" for k, v in flt.describe().items())


def cmd_causes(args: argparse.Namespace) -> int:
    """The dead letters by cause (what ``--cause`` selects), most frequent first."""
    from queuewatch.dlq.causes import group_by_cause
    from queuewatch.dlq.model import format_ms

    flt = filter_from_args(args)

    async def fetch(dlq: Any) -> tuple[str, int, list[Any]]:
        return dlq.queue, await dlq.depth(), await dlq.find(flt, max_results=args.max)

    queue, total, letters = with_dlq(args, fetch)
    causes = group_by_cause(letters)
    if args.json:
        print_json({"queue": queue, "total": total, "read": len(letters), "causes": [
            {"cause": c.label, "count": c.count, "first_ms": c.first_ms, "last_ms": c.last_ms,
             "reasons": sorted(c.reasons)} for c in causes]})
        return 0
    print(f"{queue}: {total} dead letters, {len(causes)} causes"
          + (f" (of the first {len(letters)} read)" if len(letters) < total else ""))
    if causes:
        print(format_table(["COUNT", "CAUSE", "FIRST", "LAST"],
                           [[c.count, c.label, format_ms(c.first_ms), format_ms(c.last_ms)]
                            for c in causes], right={0}))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from queuewatch.dlq.transfer import ImportStopped

    check_writable(args, "import")
    try:
        with Progress("importing") as bar:
            result = with_dlq(args, lambda dlq: dlq.import_(
                args.file, progress=bar, skip=args.skip, again=args.again,
                skip_limit_check=args.skip_limit_check))
    except ImportStopped as exc:
        print(exc.result.report())
        return 1
    print(result.report())  # names the queue the messages went into (jobs -> 'jobs.dlq')
    return 0 if result.outcome == "ok" else 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dlq", help="inspect, replay, delete, export/import dead letters",
                       description=__doc__)
    dsub = p.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND")
    dsub.required = True

    def add(name: str, help: str, func: Callable[[argparse.Namespace], int],
            destructive: bool = False) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = dsub.add_parser(name, help=help, description=help)
        sp.add_argument("queue", help="the DLQ, or its job queue (jobs means jobs.dlq, or "
                        "the queue its dead-letter arguments or policy send dead letters to)")
        add_connection_options(sp)
        if destructive:
            add_read_only_option(sp)
        if name not in ("purge", "import"):
            sp.add_argument("--force-read", action="store_true",
                            help="read the queue even when it has consumers (refused by "
                            "default: reading takes its messages from them for a moment)")
        sp.set_defaults(func=func, subparser=sp)
        return sp

    sp = add("list", "list dead letters without removing them (peek)", cmd_list)
    sp.add_argument("--offset", type=non_negative_int, default=0)
    sp.add_argument("--limit", type=non_negative_int, default=50)
    sp.add_argument("--json", action="store_true")
    add_filter_options(sp)
    sp = add("show", "one dead letter in full: death info, headers, decoded body", cmd_show)
    sp.add_argument("job_id")
    sp.add_argument("--json", action="store_true")
    sp = add("replay", "send dead letters back to their original route (loss-free)",
             cmd_replay, destructive=True)
    add_filter_options(sp)
    sp.add_argument("--dry-run", action="store_true", help="count what would be replayed; change nothing")
    sp.add_argument("--rate", type=positive_float, metavar="PER_SECOND",
                    help="at most this many per second")
    sp.add_argument("--force", action="store_true", help="replay even past --max-replays")
    sp.add_argument("--max-replays", type=non_negative_int, default=3, metavar="N",
                    help="refuse dead letters already replayed N times (default 3)")
    sp.add_argument("--limit", type=positive_int,
                    help="look at no more than this many (from the head)")
    sp.add_argument("--yes", "-y", action="store_true", help="no dry run and no question first")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--via-shovel", action="store_true",
                     help="require a RabbitMQ shovel underneath (several times faster, same "
                     "replay-count guard; no rate/limit, no filter but --error-type/--reason) "
                     "and fail if it does not fit. Default: a replay of 1,000+ dead letters "
                     "takes it where it fits")
    how.add_argument("--per-message", action="store_true",
                     help="never use a shovel: republish message by message")
    add_skip_limit_check_option(sp, "replay")
    sp.add_argument("--json", action="store_true")
    sp = add("delete", "delete selected dead letters by job id", cmd_delete, destructive=True)
    sp.add_argument("job_ids", nargs="*", type=non_empty, metavar="JOB_ID")
    sp.add_argument("--job", action="append", type=non_empty, metavar="JOB_ID",
                    help="a job id (repeatable; as for list and replay)")
    sp = add("purge", "delete every dead letter of the queue", cmd_purge, destructive=True)
    sp.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    sp = add("export", "write the dead letters (all, or those the filter selects, e.g. "
             "--cause) to a JSONL file (the queue is unchanged)", cmd_export)
    sp.add_argument("file")
    add_filter_options(sp)
    sp = add("causes", "the dead letters grouped by cause (error type + message shape), with "
             "counts: what --cause selects", cmd_causes)
    sp.add_argument("--max", type=positive_int, default=100_000, metavar="N",
                    help="read at most N dead letters (default 100000)")
    sp.add_argument("--json", action="store_true")
    add_filter_options(sp)
    sp = add("import", "publish the messages of a JSONL export into the queue", cmd_import,
             destructive=True)
    sp.add_argument("file")
    sp.add_argument("--skip", type=non_negative_int, default=0, metavar="N",
                    help="leave out the first N messages (resume an import that stopped: its "
                    "report says N)")
    sp.add_argument("--again", action="store_true",
                    help="also publish the messages an earlier import of this file put into "
                    "this queue (by default a re-run adds only what is not there yet)")
    add_skip_limit_check_option(sp, "import")
