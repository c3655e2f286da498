"""``queuewatch serve [--port 9673] [--bind 127.0.0.1] [--web-config FILE]``: the job status
API over HTTP (status, timeline, result by id) and the live event stream (SSE)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from queuewatch import stopsignal
from queuewatch.cli.common import (
    add_connection_options,
    add_web_config_option,
    port_or_zero,
    run,
    settings_from_args,
)


def cmd_serve(args: argparse.Namespace) -> int:
    from queuewatch.config import mask_url
    from queuewatch.jobs import Jobs
    from queuewatch.jobs.web import JobsWeb
    from queuewatch.webconfig import WebConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = settings_from_args(args)
    web = WebConfig.load(settings.web_config)  # no file: plain HTTP, no users

    async def serve() -> int:
        async with Jobs(settings) as jobs:
            app = JobsWeb(jobs, web=web)
            try:
                port = await app.start(args.bind, args.port)
            except OSError as exc:
                print(f"queuewatch: error: cannot listen on {args.bind}:{args.port}: "
                      f"{exc.strerror}", file=sys.stderr)
                return 2
            print(f"queuewatch serve: {web.base_url(args.bind, port)}/jobs/{{id}} and /events "
                  f"(broker {mask_url(settings.amqp_url)}, vhost {settings.effective_vhost}"
                  f"{', basic auth' if web.users else ''})", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if stopsignal.take():
                stop.set()
            try:
                await stop.wait()
            finally:
                await app.close()
        return 0

    return run(serve)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve", help="serve job status, results and live job events over HTTP",
        description="Serve GET /jobs/{id} (state and timeline; 404 for an unknown id), "
        "GET /jobs/{id}/result?timeout=S (waits for the outcome), GET /events?job=ID|queue=Q "
        "(Server-Sent Events, resumable with Last-Event-ID) and GET /healthz, from the job "
        "events stream. TLS and basic auth as the exporter's (--web-config).",
    )
    p.add_argument("--port", type=port_or_zero, default=9673,
                   help="port to listen on (default 9673; 0 picks a free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add_web_config_option(p)
    add_connection_options(p)
    p.set_defaults(func=cmd_serve)
