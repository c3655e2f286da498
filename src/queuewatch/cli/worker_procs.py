"""``queuewatch worker --processes N``: the same app in N supervised processes.

Each child is ``queuewatch worker APP --processes 1`` with the parent's options; child ``i``
(1-based) serves metrics on ``--metrics-port`` + i - 1 (0: each picks a free port) and, when
the worker is named (``--name`` / ``worker_name``), is called ``NAME-i``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from queuewatch.config import Settings, mask_url
from queuewatch.idempotency import SqliteStore
from queuewatch.worker.supervisor import KILL_GRACE, Supervisor, default_processes

#: Options passed on to every child as given to the parent. The broker URLs (which carry the
#: password) go through the environment instead (:func:`broker_env`): a command line is
#: readable by every local user (ps, /proc/PID/cmdline).
_PASSED = (("concurrency", "--concurrency"), ("prefetch", "--prefetch"),
           ("config", "--config"), ("vhost", "--vhost"), ("web_config", "--web-config"))


def process_count(value: str) -> int:
    """``--processes``: a count >= 1, or ``auto`` (one per core)."""
    if value == "auto":
        return default_processes()
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number or 'auto'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 or 'auto' (got {n})")
    return n


def child_command(args: argparse.Namespace, index: int) -> list[str]:
    cmd = [sys.executable, "-m", "queuewatch.cli.main", "worker", args.app, "--processes", "1"]
    for attr, flag in _PASSED:
        value = getattr(args, attr, None)
        if value is not None:
            cmd += [flag, str(value)]
    port = getattr(args, "metrics_port", None)
    if port is not None:
        cmd += ["--metrics-port", str(port + index - 1 if port else 0)]
    if getattr(args, "verbose", False):
        cmd.append("-v")
    return cmd


def broker_env(settings: Settings) -> dict[str, str]:
    """The parent's broker addresses, for a child's environment (never its command line)."""
    return {"QUEUEWATCH_AMQP_URL": settings.amqp_url,
            "QUEUEWATCH_AMQP_URLS": ",".join(settings.amqp_urls),
            "QUEUEWATCH_MANAGEMENT_URL": settings.management_url,
            "QUEUEWATCH_MANAGEMENT_URLS": ",".join(settings.management_urls)}


def run_supervised(args: argparse.Namespace, settings: Settings) -> int:
    logging.getLogger("queuewatch.worker.supervisor").setLevel(logging.INFO)
    # Create the host's idempotency store (WAL) once, before N processes open it at once.
    asyncio.run(SqliteStore.default(settings).close())
    name = settings.worker_name

    def env(index: int) -> dict[str, str]:
        named = {"QUEUEWATCH_WORKER_NAME": f"{name}-{index}"} if name else {}
        return {**broker_env(settings), **named}

    supervisor = Supervisor(lambda i: child_command(args, i), args.processes, env=env,
                            shutdown_timeout=_shutdown_timeout() + KILL_GRACE)
    print(f"supervising {args.processes} worker processes of {args.app} on "
          f"{mask_url(settings.amqp_url)} vhost {settings.effective_vhost!r}",
          file=sys.stderr, flush=True)
    return supervisor.run()


def _shutdown_timeout() -> float:
    from queuewatch.worker.runtime import DEFAULT_SHUTDOWN_TIMEOUT

    return DEFAULT_SHUTDOWN_TIMEOUT
