"""queuewatch's benchmark harness: every speed claim as a ratio against a baseline measured
side by side on the same broker (raw aio-pika, pika, Dramatiq, Celery, RabbitMQ's shovel,
raw management-API fetches). Run ``./dev bench`` or ``python -m bench --help``.

The harness measures the queuewatch source tree it lives in (``<repo>/src`` goes first on
``sys.path``, here and in every worker it starts), whatever copy the venv's editable
install points at.
"""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
