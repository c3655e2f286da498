"""``queuewatch scheduler`` (fire the schedules) and ``queuewatch schedules
list|add|pause|resume|remove`` (read and change them at run time)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from datetime import UTC, datetime
from typing import Any

from queuewatch import stopsignal
from queuewatch.cli.common import (
    add_connection_options,
    add_read_only_option,
    format_table,
    print_json,
    run,
    settings_from_args,
)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_scheduler(args: argparse.Namespace) -> int:
    from queuewatch.config import mask_url
    from queuewatch.schedules import Scheduler
    from queuewatch.topology import load_topology

    settings = settings_from_args(args)
    topology = load_topology(args.topology) if args.topology else None
    scheduler = Scheduler(settings, topology, name=args.name)  # bad schedules: exit 2 here
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def go() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, scheduler.stop)
        if stopsignal.take():
            scheduler.stop()
        async with scheduler:
            print(f"queuewatch scheduler {scheduler.name}: {len(scheduler.store.book.entries)} "
                  f"schedule(s) (broker {mask_url(settings.amqp_url)}, vhost "
                  f"{settings.effective_vhost})", flush=True)
            await scheduler.run()
        return 0

    return run(go)


def cmd_list(args: argparse.Namespace) -> int:
    from queuewatch.schedules import list_schedules

    settings = settings_from_args(args)
    listing = run(lambda: list_schedules(settings))
    if args.json:
        print_json({"leader": listing.leader, "leader_running": listing.leader_running,
                    "schedules": [v.to_json() for v in listing.schedules]})
        return 0
    if not listing.schedules:
        print("no schedules")
    else:
        print(format_table(
            ["NAME", "QUEUE", "WHEN", "STATE", "LAST RUN", "OUTCOME", "NEXT RUN", "MISSED"],
            [[v.name, v.queue, v.when, "paused" if v.paused else "active", _when(v.last_tick_ms),
              v.outcome or "-", _when(v.next_ms), v.missed] for v in listing.schedules]))
    print(f"leader: {listing.leader_text}")
    return 0


def _apply(args: argparse.Namespace, change: Any) -> int:
    from queuewatch.schedules.changes import apply_change

    settings = settings_from_args(args)
    print(run(lambda: apply_change(settings, change, origin="cli")))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from queuewatch.schedules.changes import ScheduleChange, build_schedule, parse_payload

    schedule = build_schedule(args.name, args.queue, cron=args.cron, every=args.every,
                              timezone=args.timezone, payload=parse_payload(args.payload, "--payload"),
                              missed=args.missed, grace=args.grace, priority=args.priority)
    return _apply(args, ScheduleChange("add", args.name, schedule))


def cmd_change(args: argparse.Namespace) -> int:
    from queuewatch.errors import ConfigError
    from queuewatch.schedules.changes import ScheduleChange, parse_every, parse_payload
    from queuewatch.schedules.cron import Cron, zone

    fields: dict[str, Any] = {}
    if args.cron is not None:
        Cron.parse(args.cron)
        fields["cron"] = args.cron
    if args.every is not None:
        fields["every"] = parse_every(args.every)
    if args.timezone is not None:
        zone(args.timezone)
        fields["timezone"] = args.timezone
    if args.payload is not None:
        fields["payload"] = parse_payload(args.payload, "--payload")
    for key in ("queue", "missed", "grace", "priority"):
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    if not fields:
        raise ConfigError("schedules change: give at least one of --queue, --cron, --every, "
                          "--timezone, --payload, --missed, --grace, --priority")
    return _apply(args, ScheduleChange("change", args.name, fields=fields))


def _simple(action: str) -> Any:
    def cmd(args: argparse.Namespace) -> int:
        from queuewatch.schedules.changes import ScheduleChange

        return _apply(args, ScheduleChange(action, args.name))  # type: ignore[arg-type]

    return cmd


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "scheduler", help="fire recurring jobs (run two or more for availability)",
        description="Fire the schedules' jobs: from the topology file's [[schedule]] tables and "
        "those added at run time (queuewatch schedules add). Any number may run at once; one "
        "leads (an exclusive queue on the broker), the others take over within a second of "
        "its loss, and each tick fires once (see docs/jobs.md).",
    )
    add_connection_options(p)
    p.add_argument("--topology", metavar="FILE", help="topology file with [[schedule]] tables")
    p.add_argument("--name", help="this scheduler's name (default host-pid); a name keeps its job index "
                   "across restarts (default: read the job events again at each start)")
    p.set_defaults(func=cmd_scheduler)

    s = sub.add_parser("schedules", help="list, add, change, pause, resume or remove recurring jobs")
    ssub = s.add_subparsers(dest="schedules_command", metavar="ACTION")
    ssub.required = True
    ls = ssub.add_parser("list", help="every schedule: last run, its outcome, next run")
    add_connection_options(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    add = ssub.add_parser("add", help="add a schedule, or change one (same name)")
    add_connection_options(add)
    add_read_only_option(add)
    add.add_argument("name")
    add.add_argument("--queue", required=True)
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="five-field cron expression, e.g. '0 3 * * *'")
    when.add_argument("--every", type=float, metavar="SECONDS", help="fixed interval")
    add.add_argument("--timezone", default="UTC", help="IANA time zone of --cron (default UTC)")
    add.add_argument("--payload", metavar="JSON", help="the job's payload (JSON)")
    add.add_argument("--missed", choices=("skip", "fire_once"), default="skip",
                     help="ticks missed while no scheduler ran: skip them (default) or fire once")
    add.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                     help="a tick this late still fires normally (default 30)")
    add.add_argument("--priority", type=int)
    add.set_defaults(func=cmd_add)
    ch = ssub.add_parser("change", help="change some fields of a schedule (the others stay)")
    add_connection_options(ch)
    add_read_only_option(ch)
    ch.add_argument("name")
    ch.add_argument("--queue")
    ch_when = ch.add_mutually_exclusive_group()
    ch_when.add_argument("--cron", metavar="EXPR", help="five-field cron expression")
    ch_when.add_argument("--every", metavar="SECONDS", help="fixed interval (seconds > 0)")
    ch.add_argument("--timezone", help="IANA time zone of the cron expression")
    ch.add_argument("--payload", metavar="JSON")
    ch.add_argument("--missed", choices=("skip", "fire_once"))
    ch.add_argument("--grace", type=float, metavar="SECONDS")
    ch.add_argument("--priority", type=int)
    ch.set_defaults(func=cmd_change)
    for action, text in (("pause", "stop firing a schedule (kept)"),
                         ("resume", "fire a paused schedule again (from now on)"),
                         ("remove", "delete a schedule")):
        a = ssub.add_parser(action, help=text)
        add_connection_options(a)
        add_read_only_option(a)
        a.add_argument("name")
        a.set_defaults(func=_simple(action))
