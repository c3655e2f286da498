"""A SIGTERM that arrives before a long-running command listens for it.

``queuewatch worker`` (and the exporter, ``serve``, ``webhooks``, the scheduler) take SIGTERM
as "stop gracefully, exit 0". They can only install their handler once Python, queuewatch
and the app are imported and the arguments parsed: up to a second after the process
started. Before, Python's default action killed the process (exit -15), so a service
manager that stopped a worker right after starting it saw a crash. The ``queuewatch``
command :func:`hold`\\s SIGTERM from its first line (:mod:`queuewatch.cli.entry`, before the
command line's own imports; :func:`queuewatch.cli.main.main` again, for ``python -m``); a
command then :func:`take`\\s what arrived when it installs its own handler, and stops at once
if a stop was asked for. Every other command :func:`release`\\s it, and a SIGTERM held
meanwhile is delivered again: it dies of it as before. Measured: a worker SIGTERMed 40 ms
or more after its start now always exits 0 (it was killed up to ~0.8 s in before;
``python -m bench.early_sigterm``).
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

_held: list[int] = []
_previous: list[Any] = []  # the handler hold() replaced


def _record(signum: int, _frame: FrameType | None) -> None:
    _held.append(signum)


def _main_thread() -> bool:
    """Handlers can only be set there (``main()`` may run in a thread: tests do)."""
    return threading.current_thread() is threading.main_thread()


def hold() -> None:
    """Record SIGTERM instead of dying of it (until a handler replaces this one)."""
    if _main_thread():
        previous = signal.signal(signal.SIGTERM, _record)
        if previous is not _record:
            _previous[:] = [previous]


def take() -> bool:
    """Whether a SIGTERM arrived while held (forgotten once taken)."""
    seen = bool(_held)
    _held.clear()
    return seen


def release() -> None:
    """Back to the handler before :func:`hold` (Python's default: die); a SIGTERM held
    meanwhile is delivered to it again."""
    if not _main_thread():
        return
    previous = _previous.pop() if _previous else None
    signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    if take():
        os.kill(os.getpid(), signal.SIGTERM)
