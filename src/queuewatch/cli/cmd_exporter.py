"""``queuewatch exporter [--port 9672] [--bind 127.0.0.1]``: Prometheus metrics over HTTP."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import replace

from queuewatch import stopsignal
from queuewatch.cli.common import (
    add_connection_options,
    add_web_config_option,
    port_or_zero,
    positive_float,
    settings_from_args,
)


def cmd_exporter(args: argparse.Namespace) -> int:
    from queuewatch.config import mask_url
    from queuewatch.metrics.server import Exporter
    from queuewatch.monitor.core import interval_warning
    from queuewatch.topology import load_topology

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # httpx logs every request at INFO: one line per management-API call, every poll.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = settings_from_args(args)
    settings = replace(
        settings,
        export_include=tuple(args.include) if args.include else settings.export_include,
        export_exclude=tuple(args.exclude) if args.exclude else settings.export_exclude,
        export_max_queues=(settings.export_max_queues if args.max_queues is None
                           else max(args.max_queues, 0)),
        export_lean=settings.export_lean or args.lean)
    topology = load_topology(args.topology) if args.topology else None
    max_age = args.max_age if args.max_age is not None else settings.poll_interval
    warning = interval_warning(max_age)
    if warning:
        print(f"queuewatch: warning: {warning}", file=sys.stderr)
    exporter = Exporter(settings, heartbeats=not args.no_heartbeats, topology=topology,
                        max_age=max_age, all_vhosts=args.all_vhosts)
    stop = threading.Event()
    # SIGTERM (systemd, Kubernetes, the demo) stops it as Ctrl-C does, through close(),
    # and the exit code is 0 (Ctrl-C: 130)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    if stopsignal.take():
        stop.set()
    try:
        try:
            port = exporter.start(args.port, args.bind)
        except OSError as exc:
            print(f"queuewatch: error: cannot listen on {args.bind}:{args.port}: {exc.strerror}",
                  file=sys.stderr)
            return 2
        auth = ", basic auth" if exporter.web.users else ""
        print(f"queuewatch exporter: {exporter.web.base_url(args.bind, port)}/metrics{auth} "
              f"(broker {mask_url(settings.management_url)}, vhost "
              f"{'(all)' if args.all_vhosts else settings.effective_vhost})", flush=True)
        stop.wait()
    finally:
        exporter.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "exporter", help="serve Prometheus metrics (queue depth, lag, ETAs, DLQs, workers)",
        description="Serve /metrics for Prometheus. The exporter polls the broker in the "
        "background every poll interval and each scrape serves the latest snapshot "
        "(queuewatch_snapshot_age_seconds tells its age), so a scrape never waits for the "
        "broker; when the broker is unreachable it still answers, with queuewatch_up 0 and "
        "queuewatch_scrape_errors_total raised.",
    )
    p.add_argument("--port", type=port_or_zero, default=9672,
                   help="port to listen on (default 9672; 0 picks a free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--max-age", type=positive_float, metavar="SECONDS",
                   help="seconds between background polls (default: poll_interval, 5)")
    p.add_argument("--include", action="append", metavar="GLOB",
                   help="export only queues matching GLOB (repeatable; 'vhost/GLOB' matches "
                   "vhost/name; setting export_include)")
    p.add_argument("--exclude", action="append", metavar="GLOB",
                   help="leave out queues matching GLOB (repeatable; setting export_exclude)")
    p.add_argument("--lean", action="store_true",
                   help="leave queue depth and consumer counts to rabbitmq_prometheus; export "
                   "only what it lacks (setting export_lean; see docs/monitoring.md)")
    p.add_argument("--max-queues", type=int, metavar="N",
                   help="export at most N queues, first by vhost and name (0: no cap; "
                   "setting export_max_queues)")
    p.add_argument("--no-heartbeats", action="store_true", help="queues only, no worker metrics")
    p.add_argument("--topology", metavar="FILE", help="topology file (per-queue stuck_after)")
    p.add_argument("--all-vhosts", action="store_true", help="export every vhost")
    add_web_config_option(p)
    add_connection_options(p)
    p.set_defaults(func=cmd_exporter)
