"""Entry point: builds the parser from every ``queuewatch.cli.cmd_*`` module and runs it.

Any :class:`~queuewatch.errors.QueuewatchError` becomes one line on stderr and exit code 2;
no traceback reaches the user for a problem they can fix.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from queuewatch import __version__, redact, stopsignal
from queuewatch.errors import QueuewatchError


class _Parser(argparse.ArgumentParser):
    """A parser whose usage errors are redacted too: argparse repeats the argument it could
    not place ("invalid choice: 'amqp://user:password@host/'"). Subcommands' parsers are of
    this class as well (``add_subparsers`` makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        super().error(redact.redact(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="queuewatch",
        description="Job queues on RabbitMQ that never lose a job, and a console to see them.",
    )
    parser.add_argument("--version", action="version", version=f"queuewatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    import queuewatch.cli as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            module = importlib.import_module(f"queuewatch.cli.{mod.name}")
            module.register(sub)
    return parser


#: Commands that run until stopped and configure their own logging (a worker, the exporter,
#: the console). Every other command is one-shot: it reports through its result or its
#: one error line, so a warning logged on the way (a failed address before the next one
#: answered, a retry) must not reach the terminal as a second line.
LONG_RUNNING = frozenset({"worker", "exporter", "tui", "demo", "serve", "webhooks",
                          "scheduler"})
#: Long-running commands that take a SIGTERM held since the process started
#: (:mod:`queuewatch.stopsignal`) when they install their own handler.
TAKES_EARLY_STOP = frozenset({"worker", "exporter", "serve", "webhooks", "scheduler"})


def main(argv: Sequence[str] | None = None) -> int:
    stopsignal.hold()  # first: a SIGTERM while the imports below run must not kill a worker
    # One redaction at the edge: every log record, uncaught traceback and error line below
    # goes through queuewatch.redact (the settings register their secrets as they load).
    redact.install()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BaseException:  # --help, a usage error
        stopsignal.release()
        raise
    if args.command not in TAKES_EARLY_STOP:
        stopsignal.release()
    if args.command not in LONG_RUNNING:
        logging.basicConfig(level=logging.CRITICAL)
    try:
        result = args.func(args)
    except QueuewatchError as exc:
        print(f"queuewatch: error: {redact.redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("queuewatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
