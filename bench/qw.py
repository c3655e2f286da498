"""The one place the harness touches queuewatch's own components (their public API only).

Each ``require_*`` raises :class:`~bench.harness.NotAvailable` with the reason when the
component is missing or does not import, so its benchmark row says "n/a" and the run goes on.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from bench.harness import NotAvailable


def _module(name: str, *attrs: str) -> ModuleType:
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:
        raise NotAvailable(f"{name} does not import ({exc})") from exc
    missing = [a for a in attrs if not hasattr(mod, a)]
    if missing:
        raise NotAvailable(f"{name} has no {', '.join(missing)}")
    return mod


def require_worker() -> ModuleType:
    return _module("queuewatch.worker", "Worker")


def require_producer() -> ModuleType:
    return _module("queuewatch.producer", "AsyncProducer", "Producer")
