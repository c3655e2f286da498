"""``queuewatch serve [--port 9673] [--bind 127.0.0.1] [--web-config FILE]``: the job status
API over HTTP (status, timeline, result by id) and the live event stream (SSE).

It listens before the broker answers, as the exporter does (:mod:`queuewatch.jobs.startup`):
a broker that is away is waited out with the link's reconnect policy, one that refuses the
credentials or the vhost ends the command with its one error line (exit 2)."""

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
    from queuewatch.aio import end_task
    from queuewatch.config import mask_url
    from queuewatch.jobs import Jobs
    from queuewatch.jobs.startup import Startup
    from queuewatch.jobs.web import JobsWeb
    from queuewatch.webconfig import WebConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = settings_from_args(args)
    web = WebConfig.load(settings.web_config)  # no file: plain HTTP, no users

    async def serve() -> int:
        # Listen first, as the exporter does; the job events are read in the background
        # (until then the job routes answer 503 with the reason, /healthz says "starting").
        jobs = Jobs(settings)
        startup = Startup(jobs)
        app = JobsWeb(jobs, web=web, startup=startup)
        quiet = _LinkQuietUntilReady(startup.ready)
        link_log = logging.getLogger("queuewatch.broker.link")
        link_log.addFilter(quiet)
        try:
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
            starting = startup.begin()
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not stop.is_set() and starting.done() and not starting.cancelled():
                    failed = starting.exception()
                    if failed is not None:  # a refusal (credentials, vhost): no use waiting
                        raise failed
                await stop.wait()
            finally:
                await end_task(stopping)
        finally:
            await app.close()
            await startup.close()
            await jobs.close()
            link_log.removeFilter(quiet)
        return 0

    return run(serve)


class _LinkQuietUntilReady(logging.Filter):
    """Until the job events are first read, the link's own warnings (one per reason) are left
    to the start's (:mod:`queuewatch.jobs.startup`), and a refusal to the one error line."""

    def __init__(self, ready: asyncio.Event) -> None:
        super().__init__()
        self.ready = ready

    def filter(self, record: logging.LogRecord) -> bool:
        return self.ready.is_set() or record.levelno < logging.WARNING


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve", help="serve job status, results and live job events over HTTP",
        description="Serve GET /jobs/{id} (state and timeline; 404 for an unknown id), "
        "GET /jobs/{id}/result?timeout=S (waits for the outcome), GET /events?job=ID|queue=Q "
        "(Server-Sent Events, resumable with Last-Event-ID), GET /healthz and /readyz, from the "
        "job events stream. It listens at once: until the broker has answered and the stream "
        "is read up to now, the job routes answer 503 with the reason (/healthz 200 with "
        "status 'starting', /readyz 503) while it keeps trying; a broker that refuses the "
        "credentials or the vhost ends it (exit 2). TLS and basic auth as the exporter's "
        "(--web-config).",
    )
    p.add_argument("--port", type=port_or_zero, default=9673,
                   help="port to listen on (default 9673; 0 picks a free one)")
    p.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add_web_config_option(p)
    add_connection_options(p)
    p.set_defaults(func=cmd_serve)
