"""``queuewatch declare TOPOLOGY.toml`` and ``queuewatch config``."""

from __future__ import annotations

import argparse
import sys

from queuewatch.cli.common import add_connection_options, print_json, run, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "declare", help="declare the queues of a topology file (idempotent)",
        description="Create the job queues, DLQs, delay levels and exchanges a topology file "
        "describes. Declaring twice changes nothing; an existing queue with other arguments is "
        "reported with every difference and left alone.",
    )
    p.add_argument("topology", help="topology TOML file (see examples/topology.toml)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_connection_options(p)
    p.set_defaults(func=cmd_declare)

    c = sub.add_parser("config", help="show the effective settings (passwords masked)")
    add_connection_options(c)
    c.set_defaults(func=cmd_config)


def cmd_declare(args: argparse.Namespace) -> int:
    from queuewatch.broker.connect import connect
    from queuewatch.broker.declare import declare_topology
    from queuewatch.broker.management import ManagementClient
    from queuewatch.topology import load_topology

    topology = load_topology(args.topology)
    settings = settings_from_args(args)
    vhost = settings.effective_vhost

    async def go():  # type: ignore[no-untyped-def]
        async with ManagementClient(settings) as mgmt:
            await mgmt.check()
            conn = await connect(settings)
            try:
                return await declare_topology(conn, topology, vhost, mgmt)
            finally:
                await conn.close()

    result = run(go)
    if args.json:
        print_json({"vhost": vhost, "created": result.created, "unchanged": result.unchanged})
    else:
        print(
            f"declared {len(result.queues)} queues in vhost {vhost!r}: "
            f"{len(result.created)} created, {len(result.unchanged)} unchanged",
            file=sys.stdout,
        )
        for name in result.created:
            print(f"  + {name}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    print_json(settings_from_args(args).describe())
    return 0
