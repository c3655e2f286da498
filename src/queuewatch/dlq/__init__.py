"""Dead letters: inspect without loss, replay to the original route, delete, export/import."""

from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import DeadLetter, DeathInfo, Route
from queuewatch.dlq.peek import Page
from queuewatch.dlq.queue import DeadLetterQueue, dlq_name
from queuewatch.dlq.replay import ReplayResult, Skipped

__all__ = [
    "DeadLetter", "DeadLetterFilter", "DeadLetterQueue", "DeathInfo", "Page", "ReplayResult",
    "Route", "Skipped", "dlq_name",
]
