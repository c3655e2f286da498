"""Recording job events from blocking code (the sync producer), over a pika link.

The same batch format and stream as :class:`~queuewatch.events.recorder.EventRecorder`;
each call publishes one batch and waits for its confirm.
"""

from __future__ import annotations

import logging
import time

from queuewatch.broker.blocking import BlockingLink
from queuewatch.broker.publish import Outcome
from queuewatch.config import Settings
from queuewatch.envelope import new_job_id
from queuewatch.events.model import CONTENT_TYPE, H_COUNT, Event, encode_batch, stream_arguments

log = logging.getLogger(__name__)

#: Pause after declaring the stream before publishing to it (pika has no cheap probe here).
NEW_STREAM_SETTLE = 0.5


def record_blocking(link: BlockingLink, settings: Settings, events: list[Event],
                    timeout: float = 30.0) -> bool:
    """Publish ``events`` as one batch with a confirm (declaring the stream when it is
    missing); False when it could not be confirmed within ``timeout``."""
    deadline = time.monotonic() + timeout
    declared = False
    while True:
        result = link.publish(
            encode_batch(events), exchange="", routing_key=settings.events_stream,
            deadline=deadline, content_type=CONTENT_TYPE, message_id=new_job_id(),
            timestamp=int(time.time()), headers={H_COUNT: len(events)})
        if result.outcome is Outcome.CONFIRMED:
            return True
        if result.outcome is Outcome.UNROUTABLE and not declared:
            declared = link.declare_queue(
                settings.events_stream,
                stream_arguments(settings.events_max_age, settings.events_max_bytes), deadline)
            if declared:
                time.sleep(NEW_STREAM_SETTLE)  # see queuewatch.broker.streams: the writer starts late
                continue
        if time.monotonic() >= deadline or result.outcome is not Outcome.LINK_LOST:
            log.warning("could not record %d job events: %s (%s)", len(events),
                        result.outcome.value, result.detail)
            return False
