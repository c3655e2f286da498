"""The ``queuewatch`` command's entry point: holds SIGTERM (:mod:`queuewatch.stopsignal`)
before anything else is imported. The command line's own imports (argparse, logging, every
``cmd_*`` module) take about 65 ms here; a worker stopped in that window died of it."""

from __future__ import annotations

from queuewatch import stopsignal


def main() -> int:
    stopsignal.hold()
    from queuewatch.cli.main import main as run

    return run()
