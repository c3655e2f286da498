"""``queuewatch worker MODULE:ATTR``: run a worker app until SIGTERM/SIGINT.

``ATTR`` is a :class:`~queuewatch.worker.Worker`, or a factory called with the settings
(``make_worker(settings)``) that returns one. ``MODULE`` is a dotted module name or a path
to a ``.py`` file (``consumers/email_worker.py:make_worker``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from queuewatch.cli.common import (
    add_connection_options,
    add_web_config_option,
    port_or_zero,
    positive_int,
    settings_from_args,
)
from queuewatch.cli.worker_procs import process_count, run_supervised
from queuewatch.config import Settings, mask_url
from queuewatch.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "worker", help="run a worker app (MODULE:ATTR) until SIGTERM/SIGINT",
        description="Import MODULE (dotted name or path/to/file.py), take ATTR (a Worker, or a "
        "factory make_worker(settings) returning one) and run it. SIGTERM/SIGINT stop it "
        "gracefully: consuming stops, in-flight jobs finish, the rest go back to the queue.",
    )
    p.add_argument("app", metavar="MODULE:ATTR", help="e.g. consumers/email_worker.py:make_worker")
    p.add_argument("--concurrency", type=positive_int, help="jobs run at once (overrides the app)")
    p.add_argument("--prefetch", type=positive_int, help="deliveries held per queue (overrides the app)")
    p.add_argument("--metrics-port", type=port_or_zero, help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument("--processes", type=process_count, default="auto", metavar="N|auto",
                   help="run N processes of the app, supervised: a crashed one is restarted "
                   "with backoff, SIGTERM reaches all (default 'auto': one per core this "
                   "process may run on; 1: a single process, no supervisor, for tools that "
                   "need the worker's own pid)")
    p.add_argument("--name", help="a stable worker id (setting worker_name; NAME-1..NAME-N "
                   "with --processes): its metrics and heartbeats keep one label across restarts")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    add_web_config_option(p)
    add_connection_options(p)
    p.set_defaults(func=cmd_worker)


def load_app(spec: str) -> Any:
    """The object ``MODULE:ATTR`` names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"worker app {spec!r} must look like MODULE:ATTR (e.g. app.tasks:worker)")
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise ConfigError(f"worker app file {module_name!r} does not exist")
        sys.path.insert(0, str(path.resolve().parent))
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ConfigError(f"cannot import {module_name!r}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[path.stem] = module
        mod_spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"cannot import worker module {module_name!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None


def build_worker(app: Any, settings: Settings) -> Any:
    from queuewatch.worker import Worker

    what = "the worker app must be a Worker or a factory make_worker(settings) returning one"
    if isinstance(app, Worker):
        return app
    if not callable(app):
        raise ConfigError(f"{what}; got {type(app).__name__}")
    try:
        worker = app(settings)
    except (TypeError, ValueError) as exc:  # not a factory of ours (json:loads)
        raise ConfigError(f"{what}; calling it failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(worker, Worker):
        raise ConfigError(f"{what}; it returned {type(worker).__name__}")
    return worker


def cmd_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = settings_from_args(args)
    if args.name:
        settings = replace(settings, worker_name=args.name)
    if args.processes > 1:
        # an app that does not import or build fails here, once, not in N children that
        # the supervisor would restart for ever
        build_worker(load_app(args.app), settings)
        return run_supervised(args, settings)
    worker = build_worker(load_app(args.app), settings)
    if args.concurrency:
        worker.set_concurrency(args.concurrency)
    if args.prefetch:
        worker.prefetch = args.prefetch
    if args.metrics_port is not None:
        from queuewatch.webconfig import WebConfig

        WebConfig.load(settings.web_config)  # a bad file is one line now, not at serve time
        worker.metrics_port = args.metrics_port
    print(
        f"worker {worker.worker_id} on {mask_url(worker.settings.amqp_url)} vhost "
        f"{worker.settings.effective_vhost!r}: queues {', '.join(worker.routes)}, "
        f"concurrency {worker.concurrency}, prefetch {worker.prefetch}",
        file=sys.stderr, flush=True,
    )
    worker.run_sync()
    return 0
