"""``queuewatch webhooks [--topology FILE]``: deliver completion webhooks (dispatcher +
delivery worker for one vhost)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from queuewatch import stopsignal
from queuewatch.cli.common import (
    add_connection_options,
    positive_float,
    positive_int,
    run,
    settings_from_args,
)


def cmd_webhooks(args: argparse.Namespace) -> int:
    from queuewatch.config import mask_url
    from queuewatch.jobs.webhook_service import WebhookService
    from queuewatch.topology import WEBHOOKS_QUEUE, load_topology

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # (a line per management API call)
    settings = settings_from_args(args)
    topology = load_topology(args.topology) if args.topology else None
    service = WebhookService(settings, topology, concurrency=args.concurrency,
                             timeout=args.timeout, start="first" if args.from_first else "end")

    async def go() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop)
        if stopsignal.take():
            service.stop()
        async with service:
            queues = [q.name for q in service.topology.queues if q.webhook]
            print(f"queuewatch webhooks: delivering from {WEBHOOKS_QUEUE} (broker "
                  f"{mask_url(settings.amqp_url)}, vhost {settings.effective_vhost}; per-queue "
                  f"webhooks: {', '.join(queues) or 'none'}; per-job webhooks: on)", flush=True)
            await service.wait()
        return 0

    return run(go)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "webhooks", help="deliver completion webhooks (signed POSTs, retried, DLQ)",
        description="Watch the job events for finished jobs that have a webhook (their "
        "header x-qw-webhook: URL, or webhook = URL on their queue in the topology) and POST "
        "their outcome, "
        "signed with webhook_secret (QUEUEWATCH_WEBHOOK_SECRET). Deliveries are jobs on the "
        "queue queuewatch.webhooks: a receiver that is down gets retries with backoff, then "
        "the delivery goes to queuewatch.webhooks.dlq, from where it can be replayed. Run one "
        "per vhost.",
    )
    p.add_argument("--topology", metavar="FILE", help="topology file (per-queue webhooks; "
                   "a [[queue]] named queuewatch.webhooks tunes its retries)")
    p.add_argument("--concurrency", type=positive_int, default=10,
                   help="deliveries in flight at once (default 10)")
    p.add_argument("--timeout", type=positive_float, default=10.0, metavar="SECONDS",
                   help="longest a receiver may take to answer (default 10)")
    p.add_argument("--from-first", action="store_true",
                   help="on the first start, also send webhooks for jobs that finished before "
                   "(default: from now on; later starts resume where the last one stopped)")
    add_connection_options(p)
    p.set_defaults(func=cmd_webhooks)
