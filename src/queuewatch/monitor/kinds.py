"""Per queue type, which signals apply, and when a queue is down: one table, no ``if type ==``.

RabbitMQ has three queue types and they differ in what the monitor may say about them:

========  ==========  ======  ==============================================================
type      replicated  drains  down when (as the 3.10 management API shows it)
========  ==========  ======  ==============================================================
classic   no          yes     ``state`` is ``down`` (its node is stopped) or ``crashed``; the
                              record then carries only name/vhost/type/node/state, no counts
quorum    yes         yes     fewer than a majority of ``members`` are in ``online`` (the
                              broker still says ``state: running`` and last known counts)
stream    yes         no      like quorum; messages stay after consumption, so there is no
                              drain ETA, no backlog without consumers, no stall
========  ==========  ======  ==============================================================

A queue that is down has *unknown* depth, lag and ETAs (None), never 0: an empty-looking
row with a "drains in 0s" would be the opposite of the truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Queue states (``state``) in which the queue cannot serve anyone, whatever its type.
DOWN_STATES = frozenset({"down", "crashed", "stopped", "minority", "terminated"})


@dataclass(frozen=True)
class QueueKind:
    """What the monitor may conclude about one queue type."""

    name: str
    replicated: bool
    """Members on several nodes (``leader``, ``members``, ``online``); serves while a
    majority of its members is online."""
    drains: bool
    """Consumers remove messages by acking them: drain ETA, "backlog and no consumers" and
    "consumers but no acks" apply. A stream keeps its messages (retention decides)."""


KINDS: Mapping[str, QueueKind] = {
    "classic": QueueKind("classic", replicated=False, drains=True),
    "quorum": QueueKind("quorum", replicated=True, drains=True),
    "stream": QueueKind("stream", replicated=True, drains=False),
}


def kind_of(queue_type: str) -> QueueKind:
    """The policy of ``queue_type``; an unknown type is treated like a classic queue."""
    return KINDS.get(queue_type) or QueueKind(queue_type, replicated=False, drains=True)


def majority(members: int) -> int:
    """How many of ``members`` must be online for a replicated queue to serve."""
    return members // 2 + 1


@dataclass(frozen=True)
class Replicas:
    """A replicated queue's members as the broker lists them."""

    leader: str | None
    members: tuple[str, ...]
    online: tuple[str, ...]
    """The members (of ``members``) the broker reports online."""

    @property
    def has_majority(self) -> bool:
        return not self.members or len(self.online) >= majority(len(self.members))


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(str(v) for v in value)
    return ()


def replicas(raw: Mapping[str, Any], kind: QueueKind) -> Replicas | None:
    """Leader, members and online members of a replicated queue; None for other kinds or
    when the broker did not list its members."""
    if not kind.replicated:
        return None
    members = _names(raw.get("members"))
    if not members:
        return None
    online = set(_names(raw.get("online")))
    leader = raw.get("leader")
    return Replicas(
        leader=None if leader in (None, "") else str(leader),
        members=members,
        online=tuple(m for m in members if m in online),
    )


def down_reason(raw: Mapping[str, Any], kind: QueueKind, reps: Replicas | None) -> str | None:
    """Why the queue cannot serve now, in words for a person; None while it can."""
    state = str(raw.get("state") or "")
    node = raw.get("node")
    if state in DOWN_STATES:
        where = f" on node {node}" if node else ""
        if state == "down" and not kind.replicated:
            return f"its node {node} is down or unreachable" if node else "it is down"
        return f"its state is {state}{where}"
    if reps is not None and not reps.has_majority:
        online = ", ".join(reps.online) or "none"
        return (f"fewer than a majority of its members online ({len(reps.online)} of "
                f"{len(reps.members)}, need {majority(len(reps.members))}; online: {online})")
    return None
