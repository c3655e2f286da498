"""The queuewatch error hierarchy.

Library errors (pika, aio-pika, httpx, tomllib) are translated into these at the
edge with ``raise ... from``; the CLI turns any :class:`QueuewatchError` into one
line on stderr and exit code 2. Each error's ``str()`` is that line: what is
wrong and, where we know it, how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass


class QueuewatchError(Exception):
    """Base class of every error queuewatch raises on purpose."""

    exit_code = 2


class ConfigError(QueuewatchError):
    """A settings or topology file, or an environment variable, is invalid."""


class BrokerError(QueuewatchError):
    """Talking to RabbitMQ failed."""


class BrokerUnavailable(BrokerError):
    """Nothing answers at the AMQP or management address (refused, timed out, DNS)."""


class AuthenticationFailed(BrokerError):
    """The broker refused the credentials (AMQP ACCESS_REFUSED or HTTP 401)."""


class NotAuthorised(BrokerError):
    """The credentials are good but the user may not do this (a management tag or a
    permission is missing)."""


class ManagementUnavailable(BrokerError):
    """The management API is not there (plugin disabled) or answered with an error."""


class NotFound(BrokerError):
    """A vhost, queue or exchange named by the caller does not exist."""


class TopologyError(QueuewatchError):
    """Declaring the topology failed for a reason other than a mismatch."""


@dataclass(frozen=True)
class ArgumentDiff:
    """One queue argument whose current value differs from the requested one."""

    argument: str
    current: object
    requested: object


class TopologyMismatch(TopologyError):
    """An existing queue was declared earlier with different arguments.

    RabbitMQ answers such a declare with ``PRECONDITION_FAILED`` and closes the
    channel; queuewatch names the queue, every differing argument and the way out.
    """

    def __init__(self, queue: str, vhost: str, diffs: list[ArgumentDiff]) -> None:
        self.queue = queue
        self.vhost = vhost
        self.diffs = diffs
        parts = ", ".join(
            f"{d.argument}: current={d.current!r} requested={d.requested!r}" for d in diffs
        )
        super().__init__(
            f"queue {queue!r} in vhost {vhost!r} exists with different arguments ({parts}). "
            "Queue arguments cannot change in place: declare the new spec under a new name and "
            "move the messages (queuewatch dlq replay / a shovel), or delete the queue when it is "
            "empty (rabbitmqctl delete_queue), or put limits in a policy instead of arguments."
        )


class DelayLevelsMismatch(TopologyError):
    """The vhost has delay levels declared with another count than the topology's."""

    def __init__(self, vhost: str, current: int, requested: int) -> None:
        self.vhost = vhost
        self.current = current
        self.requested = requested
        super().__init__(
            f"vhost {vhost!r} has {current} delay levels (queuewatch.delay.0 to "
            f"queuewatch.delay.{current - 1}) and the topology asks for {requested}: declared "
            "over each other, their bindings would route every delayed job and retry twice. "
            f"Set delay_levels = {current} in the topology (every service of the vhost must use "
            "the same number), or, to change it, stop the producers and workers, wait until the "
            "queuewatch.delay.* queues are empty and delete those queues and exchanges first."
        )


class PublishError(QueuewatchError):
    """A publish was not confirmed by the broker."""


class BackPressure(PublishError):
    """The target queue is at its cap (``x-overflow: reject-publish``) and nacked the publish."""

    def __init__(self, queue: str, cap: str | None = None) -> None:
        self.queue = queue
        self.cap = cap
        detail = f" (cap {cap})" if cap else ""
        super().__init__(
            f"queue {queue!r} is full{detail}: the broker refused the message; "
            "retry later or publish with wait=True"
        )


class DuplicateJob(PublishError):
    """``unique_for``: a job with the same unique key is still queued, scheduled or running."""

    def __init__(self, key: str, existing_job_id: str | None) -> None:
        self.key = key
        self.existing_job_id = existing_job_id
        held = f"job {existing_job_id}" if existing_job_id else "another job"
        super().__init__(f"a job with unique key {key!r} is already queued, scheduled or "
                         f"running ({held}); not published again")


class Unroutable(PublishError):
    """A ``mandatory`` publish matched no queue and came back."""

    def __init__(self, exchange: str, routing_key: str) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        super().__init__(
            f"message to exchange {exchange or '(default)'!r} with routing key {routing_key!r} "
            "matched no queue; declare the topology first (queuewatch declare)"
        )


class QueueDown(PublishError):
    """The target queue exists but cannot take messages: its node is down, or a quorum
    queue has no majority of its members online."""

    def __init__(self, queue: str, detail: str = "") -> None:
        self.queue = queue
        super().__init__(
            f"queue {queue!r} is down (its node is unavailable or it has no quorum); the "
            "message was not accepted — retry when the node is back"
            + (f" ({detail})" if detail else "")
        )


class ReadOnlyError(QueuewatchError):
    """A destructive action was asked for while read-only mode is on."""

    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(
            f"refused: {action!r} changes the broker and queuewatch is in read-only mode "
            "(--read-only or read_only = true in the config)"
        )
