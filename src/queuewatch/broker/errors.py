"""The one set of "the link broke" errors, and translation of connect failures.

Everything in queuewatch that catches a broken link catches :data:`LINK_ERRORS` (or asks
:func:`is_link_error`); everything that reports one raises :class:`LinkLost`.
"""

from __future__ import annotations

import asyncio
import logging

import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractChannel

from queuewatch.aio import wait_for
from queuewatch.config import mask_url
from queuewatch.errors import AuthenticationFailed, BrokerError, BrokerUnavailable, NotFound


class LinkLost(BrokerError):
    """The connection to RabbitMQ broke (or went silent) while a command needed it."""


#: Exceptions that mean the connection or channel under us is gone (not that the broker
#: refused what we asked: those are channel errors with a reply code).
LINK_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ConnectionClosed,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    BrokerUnavailable,
    LinkLost,
)

#: A channel-level refusal by the broker (the channel is closed; the connection lives).
CHANNEL_ERRORS: tuple[type[BaseException], ...] = (aiormq.exceptions.AMQPChannelError,)
ChannelNotFound = aiormq.exceptions.ChannelNotFoundEntity
"""The broker answered 404 NOT_FOUND (a queue or exchange is missing, or a queue's node is
down: see :func:`queue_down_text`)."""
ChannelPreconditionFailed = aiormq.exceptions.ChannelPreconditionFailed
AMQPError = aiormq.exceptions.AMQPError

#: Anything the link or the broker can throw at a call on a channel: a broken link, a
#: refusal, or aio-pika's RuntimeError for a channel used after its link died. For clean-up
#: paths (closing, cancelling) that must never raise.
ANY_BROKER_ERROR: tuple[type[BaseException], ...] = (*LINK_ERRORS, AMQPError, RuntimeError)
#: A broken link or a broker refusal (not the RuntimeError of a programming mistake).
LINK_OR_AMQP_ERRORS: tuple[type[BaseException], ...] = (*LINK_ERRORS, AMQPError)


#: Seconds a clean-up path waits for a channel to close.
CLOSE_TIMEOUT = 2.0


async def close_channel(channel: AbstractChannel | None, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close ``channel`` (nothing to do when None or closed already) within ``timeout`` s,
    never raising a broker error: for clean-up paths, where the link may be gone. A failure
    is logged at debug level."""
    if channel is None or channel.is_closed:
        return
    try:
        await wait_for(channel.close(), timeout)
    except ANY_BROKER_ERROR as exc:
        logging.getLogger(__name__).debug("closing a channel: %s", exc)


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task was asked to stop. Call it where a loop
    catches a broker error: aio-pika/aiormq may turn a cancellation that lands inside one of
    their calls into a channel error, and a loop that catches it and goes on never ends
    (seen twice: a rate-limit wait, then the heartbeat sender, each keeping a worker alive
    for ever after SIGTERM)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def lost_unless_cancelled(exc: asyncio.CancelledError, what: str) -> LinkLost:
    """For ``except CancelledError`` around a call on a channel or connection: raise the
    CancelledError again when the current task was asked to stop; otherwise aiormq cancelled
    the call because it dropped the connection under it (a silent link found dead by the
    heartbeat check, mid-RPC), and this returns the :class:`LinkLost` to raise instead (a
    raw CancelledError escaped ``AsyncProducer.publish()`` after a 30 s black hole so)."""
    raise_if_cancelled()
    return LinkLost(f"{what}: the connection was dropped under it")


def is_link_error(exc: BaseException) -> bool:
    if isinstance(exc, LINK_ERRORS):
        return True
    # aio-pika raises RuntimeError("... closed") when a channel is used after its link died
    return isinstance(exc, RuntimeError) and "closed" in str(exc).lower()


def queue_down_text(exc: BaseException) -> bool:
    """Whether a NOT_FOUND says the queue exists but its node is down (RabbitMQ: "home node
    ... of durable queue ... is down or inaccessible")."""
    return "down or inaccessible" in str(exc) or "is down" in str(exc)


def translate_connect_error(exc: BaseException, url: str, vhost: str, timeout: float) -> Exception:
    """Map an aio-pika/aiormq/OS connection failure to a queuewatch error (one line,
    password masked)."""
    shown = mask_url(url)
    text = str(exc)
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError) or "ACCESS_REFUSED" in text:
        return AuthenticationFailed(
            f"RabbitMQ at {shown} refused the credentials; check the user and password in amqp_url"
        )
    if "NOT_ALLOWED" in text or "Connection.Close" in text:
        return NotFound(
            f"vhost {vhost!r} does not exist on {shown} or the user may not use it "
            "(rabbitmqctl add_vhost / set_permissions)"
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return BrokerUnavailable(f"RabbitMQ at {shown} did not answer within {timeout:g}s")
    if isinstance(exc, ConnectionRefusedError) or isinstance(exc.__cause__, ConnectionRefusedError):
        # (aiormq wraps it: "AMQPConnectionError: [Errno 111] Connect call failed (...)")
        return BrokerUnavailable(f"cannot connect to RabbitMQ at {shown}: connection refused "
                                 "(is RabbitMQ running there?)")
    return BrokerUnavailable(f"cannot connect to RabbitMQ at {shown}: {type(exc).__name__}: "
                             f"{mask_url(text)}")


class _QuietLinkLogs(logging.Filter):
    """aiormq and aio-pika log a refused connect, a dead socket or a broker-side consumer
    cancel as WARNING/ERROR lines, some with a traceback, straight to the user's terminal.
    queuewatch reports each of these itself, in one line that says what to do, so the
    library's own records become DEBUG (shown only when debugging) without tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_LIBRARY_LOGGERS = ("aiormq.connection", "aiormq.channel", "aio_pika.connection",
                    "aio_pika.channel", "aio_pika.robust_connection", "aio_pika.queue")


def quiet_library_logs() -> None:
    """Install the filter once on the loggers that report a broken link on their own."""
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietLinkLogs) for f in logger.filters):
            logger.addFilter(_QuietLinkLogs())
