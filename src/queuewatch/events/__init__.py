"""Job events: one record of every transition of every job (see :mod:`.model`)."""

from queuewatch.events.model import Event, Source
from queuewatch.events.recorder import EventRecorder, recorder_for

__all__ = ["Event", "EventRecorder", "Source", "recorder_for"]
