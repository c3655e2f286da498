"""The blocking producer's heartbeat (issue 13 item 4): with the outbox on, a daemon thread
runs its own event loop with its own :class:`~queuewatch.broker.link.BrokerLink` and sends the
same beats as the async producer (:class:`~.beats.ProducerBeats`), about once a second.

The thread touches no pika object and no SQLite connection: it reads the
:class:`~.sync_outbox.SyncOutbox`'s counters (``depth``, ``oldest_age``, ``max_jobs``) and the
pika link's ``blocked``/``alive`` state, plain attributes the producer's thread keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from queuewatch.broker.link import BrokerLink
from queuewatch.config import Settings
from queuewatch.producer.beats import INTERVAL, LinkState, OutboxGauge, ProducerBeats

log = logging.getLogger(__name__)

#: How long :meth:`SyncBeats.close` waits for the thread to end (seconds).
JOIN_TIMEOUT = 3.0


class SyncBeats:
    """Sends ``producer_id``'s beats from a daemon thread between :meth:`start` and :meth:`close`."""

    def __init__(self, settings: Settings, producer_id: str, outbox: OutboxGauge,
                 state: LinkState, *, interval: float = INTERVAL) -> None:
        self.settings = settings
        self.producer_id = producer_id
        self.outbox = outbox
        self.state = state
        self.interval = interval
        self.beats: ProducerBeats | None = None
        """The beats sender, once the thread runs (``sent`` counts the beats that went out)."""
        self.thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def sent(self) -> int:
        return 0 if self.beats is None else self.beats.sent

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=asyncio.run, args=(self._run(),),
                                           name=f"heartbeat {self.producer_id}", daemon=True)
            self.thread.start()

    def close(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop the beats and wait (at most ``timeout``) for the thread to end."""
        self._stopping.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        thread = self.thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the heartbeat thread of %s did not end within %gs",
                            self.producer_id, timeout)

    async def _run(self) -> None:
        stop = asyncio.Event()
        self._stop = stop
        self._loop = asyncio.get_running_loop()
        if self._stopping.is_set():  # close() came before the loop was there
            return
        link = BrokerLink(self.settings, name=self.producer_id)
        beats = ProducerBeats(link, self.settings.telemetry_exchange, self.producer_id,
                              self.outbox, interval=self.interval, state=self.state)
        self.beats = beats
        try:
            await link.start()
            beats.start()
            await stop.wait()
        finally:
            await beats.close()
            await link.close()
