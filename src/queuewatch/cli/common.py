"""Helpers shared by the subcommands: global options, settings, async running, tables."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from queuewatch.config import Settings, load_settings, unknown_environment

T = TypeVar("T")


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """Options every broker-facing command takes (they override file and environment)."""
    # SUPPRESS: a subcommand that repeats these options must not overwrite a value given
    # before it (``queuewatch workers --vhost X terminate ID``); absent means "not given".
    g = parser.add_argument_group("connection")
    quiet = argparse.SUPPRESS
    g.add_argument("--config", metavar="FILE", default=quiet, help="settings file (default: ./queuewatch.toml)")
    g.add_argument("--amqp-url", metavar="URL[,URL...]", default=quiet,
                   help="AMQP URL, or a comma-separated list tried in order (QUEUEWATCH_AMQP_URL(S))")
    g.add_argument("--management-url", metavar="URL[,URL...]", default=quiet,
                   help="management API URL, or a comma-separated list tried in order")
    g.add_argument(
        "--vhost", metavar="VHOST", default=quiet, help="virtual host (default: from the AMQP URL, else /)"
    )


def add_web_config_option(parser: argparse.ArgumentParser) -> None:
    """``--web-config FILE`` for a command that serves HTTP (metrics)."""
    parser.add_argument(
        "--web-config", metavar="FILE", default=argparse.SUPPRESS,
        help="Prometheus web-config YAML: TLS (tls_server_config) and basic auth "
        "(basic_auth_users, bcrypt hashes) for the HTTP endpoint (setting web_config)",
    )


def add_read_only_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--read-only", action="store_true", default=argparse.SUPPRESS,
        help="refuse every destructive action (also: read_only = true in the config)",
    )


def add_skip_limit_check_option(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--skip-limit-check", action="store_true",
        help=f"{verb} even where the management API cannot be read to tell whether the "
        "destination has a length limit that drops its oldest messages (overflow drop-head): "
        "you vouch that it has none. Where the API answers, such a destination still keeps "
        "them (drops-head)")


def _one_or_list(value: str | None) -> tuple[str | None, tuple[str, ...] | None]:
    """``--amqp-url a,b``: a list of addresses; one URL stays a single URL."""
    if value is None or "," not in value:
        return value, None
    return None, tuple(v.strip() for v in value.split(",") if v.strip())


def settings_from_args(args: argparse.Namespace) -> Settings:
    for warning in unknown_environment():
        print(f"queuewatch: warning: {warning}", file=sys.stderr)
    amqp_url, amqp_urls = _one_or_list(getattr(args, "amqp_url", None))
    management_url, management_urls = _one_or_list(getattr(args, "management_url", None))
    return load_settings(
        getattr(args, "config", None),
        amqp_url=amqp_url, amqp_urls=amqp_urls,
        management_url=management_url, management_urls=management_urls,
        vhost=getattr(args, "vhost", None),
        read_only=getattr(args, "read_only", None) or None,
        web_config=getattr(args, "web_config", None),
    )


# -- argparse types: a bad number is argparse's one usage error (exit 2), not a traceback --

def _number(kind: Callable[[str], T], what: str, ok: Callable[[Any], bool]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


port = _number(int, "a port (1-65535)", lambda v: 1 <= v <= 65535)
"""A TCP port to connect to or listen on."""
port_or_zero = _number(int, "a port (0-65535; 0 picks a free one)", lambda v: 0 <= v <= 65535)
non_negative_int = _number(int, "a whole number >= 0", lambda v: 0 <= v <= 2**31 - 1)
positive_int = _number(int, "a whole number >= 1", lambda v: 1 <= v <= 2**31 - 1)
non_negative_float = _number(float, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)
positive_float = _number(float, "a finite number > 0", lambda v: math.isfinite(v) and v > 0)


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async core call from a synchronous command."""
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


def print_json(data: Any) -> None:
    # one write: json.dump to the stream writes each token (3.4 million writes, 28 s of
    # 40 s under cProfile for status --json at 20,000 queues)
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: set[int] | None = None) -> str:
    """An aligned plain-text table; columns in ``right`` are right-aligned (numbers)."""
    right = right or set()
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
