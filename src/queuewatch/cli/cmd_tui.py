"""``queuewatch tui``: the console on a live broker."""

from __future__ import annotations

import argparse

from queuewatch.cli.common import (
    add_connection_options,
    add_read_only_option,
    positive_float,
    settings_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "tui", help="open the console (queues, workers, stuck jobs, DLQ browser, alerts)",
        description="A terminal console over the broker: queue health, workers, stuck jobs, "
        "dead letters (inspect, replay, delete) and alerts. Press ? inside for every key.",
    )
    add_connection_options(p)
    add_read_only_option(p)
    p.add_argument("--topology", metavar="FILE",
                   help="topology TOML, for per-queue stuck-job thresholds (stuck_after)")
    p.add_argument("--interval", type=positive_float, metavar="SECONDS",
                   help="seconds between polls (default: poll_interval, 5)")
    p.set_defaults(func=cmd_tui)


def cmd_tui(args: argparse.Namespace) -> int:
    from queuewatch.topology import load_topology
    from queuewatch.tui import make_app
    from queuewatch.tui.live import LiveSource

    settings = settings_from_args(args)
    topology = load_topology(args.topology) if args.topology else None
    make_app(settings, LiveSource(settings, topology=topology), poll_interval=args.interval).run()
    return 0
