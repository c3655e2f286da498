"""Where a shovel replay holds dead letters back when a quorum queue is on either side: a
classic queue of its own, ``queuewatch.replay.<id>.held``, moved back to the DLQ's tail by a
second, plain shovel once the first has ended (:mod:`queuewatch.dlq.shovel`).

Why not straight back into the DLQ, as between classic queues: the first shovel counts the
acks it sends and stops when the count reaches the DLQ's length. Dead letters held back
into the DLQ it reads are sent to it again; with a quorum queue on either side their
confirms could overtake those of the last originals, the count ran out first, and those
originals went back to the DLQ although they had been replayed. The first shovel never sees
what goes to a queue of its own. Measured (``python -m bench.replay_share --quorum``): the
two shovels together at about the speed of one plain shovel of the quorum DLQ.

The second shovel moves one queue to one queue (in order, nothing held back). A replay that
is cancelled, stalls or fails starts it before returning; one that is killed or loses the
broker leaves the held queue to :func:`move_back_orphan`, which the next shovel replay (and
any destructive action on a DLQ) runs first. Until then what was held back is in that
queue, named after the replay, with the DLQ it belongs to in its ``x-queuewatch-dlq``
argument; it is durable and so are the dead letters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from queuewatch.broker import wire
from queuewatch.broker.management import ManagementClient
from queuewatch.broker.wire import Connection
from queuewatch.dlq.channel import once_fewer_consumers, queue_depth, raw_channel
from queuewatch.dlq.shovelrun import SRC_PREFETCH, Moved, definition, wait_gone
from queuewatch.dlq.split import exchange_names, replay_of
from queuewatch.dlq.watch import OP_TIMEOUT, bounded
from queuewatch.errors import NotFound, QueuewatchError

log = logging.getLogger(__name__)

MOVE_BACK_ROUNDS = 3
"""Shovels moving back at most, one after another, while the held queue gives some back."""
HELD_ARG = "x-queuewatch-dlq"
"""The held queue's argument naming the DLQ it belongs to."""


def held_queue(shovel: str) -> str:
    """The queue a replay shovel holds dead letters back in."""
    return exchange_names(shovel)[1]


def back_name(shovel: str) -> str:
    """The second shovel: what was held back, to the DLQ's tail."""
    return shovel + "-back"


async def declare_held(connection: Connection, shovel: str, dlq: str) -> str:
    """The held queue of ``shovel`` (durable, classic, naming ``dlq``)."""
    name = held_queue(shovel)
    async with raw_channel(connection) as ch:
        await bounded(ch.queue_declare(name, durable=True, arguments={
            "x-queue-type": "classic", HELD_ARG: dlq}), OP_TIMEOUT, "declare a queue")
    return name


async def start_back(connection: Connection, mgmt: ManagementClient, vhost: str, shovel: str,
                     dlq: str) -> int:
    """Start the shovel moving what ``shovel``'s held queue holds to ``dlq``; how many it
    moves (0: none started, the queue is empty or gone)."""
    held = held_queue(shovel)
    try:
        count = await queue_depth(connection, held)
    except NotFound:
        return 0
    if count:
        await mgmt.put_shovel(vhost, back_name(shovel),
                              definition(vhost, held, SRC_PREFETCH, dest_queue=dlq))
    return count


async def move_back(connection: Connection, mgmt: ManagementClient, vhost: str, shovel: str,
                    dlq: str) -> int:
    """What ``shovel`` held back, to the tail of ``dlq``; then its held queue is deleted.
    Returns how many were moved. The wait raises as :func:`wait_gone` does.

    A shovel's last acks can be lost as it ends (docs/dlq.md): what the held queue gives
    back then is moved again, once the queue has noticed the shovel's consumer gone (it
    may then be in the DLQ twice; never left in a held queue that nothing sweeps)."""
    count = 0
    for round_ in range(MOVE_BACK_ROUNDS):
        moving = await start_back(connection, mgmt, vhost, shovel, dlq)
        if not moving:
            break
        if round_:
            log.warning("the shovel moving back what replay %s held back gave %d back as it "
                        "ended: moved again (they may be in %r twice)", shovel, moving, dlq)
        await wait_gone(connection, mgmt, vhost, back_name(shovel), held_queue(shovel), moving,
                        None, Moved())
        count += moving
        if await once_fewer_consumers(connection, held_queue(shovel)) == 0:
            break
    await delete_if_empty(connection, shovel)
    return count


async def delete_if_empty(connection: Connection, shovel: str) -> None:
    """Delete ``shovel``'s held queue if it exists and is empty (else leave it)."""
    try:
        async with raw_channel(connection) as ch:
            await bounded(ch.queue_delete(held_queue(shovel), if_empty=True), OP_TIMEOUT,
                          "delete a queue")
    except (wire.AMQPError, ConnectionError, QueuewatchError) as exc:
        log.info("held queue of %s not deleted (%s): the next shovel replay sweeps it",
                 shovel, exc)


@dataclass(frozen=True)
class MovedBack:
    """Dead letters a sweep moved back: ``count`` from ``held`` to the tail of ``dlq``."""

    held: str
    dlq: str
    count: int

    def describe(self) -> str:
        return (f"moved {self.count} dead letters back to the tail of {self.dlq!r}: a shovel "
                f"replay had held them back in {self.held} and ended (killed, or cut off "
                "from the broker) before it could move them back")


async def move_back_orphan(connection: Connection, mgmt: ManagementClient, vhost: str,
                           shovel: str) -> MovedBack | None:
    """The held queue of a replay whose shovels are gone (its process was killed, or lost
    the broker): moved back to the DLQ it names. What was moved (None: nothing)."""
    info = await mgmt.queue(vhost, held_queue(shovel))
    if info is None:
        return None
    dlq = str((info.get("arguments") or {}).get(HELD_ARG) or "")
    if not dlq:
        return None
    count = await move_back(connection, mgmt, vhost, shovel, dlq)
    if not count:
        return None
    moved = MovedBack(held_queue(shovel), dlq, count)
    log.warning("%s", moved.describe())
    return moved


async def held_for(connection: Connection, mgmt: ManagementClient, vhost: str,
                   dlq: str) -> list[tuple[str, int]]:
    """Held queues naming ``dlq`` that hold dead letters (a replay in progress, or one that
    was interrupted): (queue, how many), for the DLQ's listings to say where they are.
    Found through the replays' exchanges, which stay until their held queue is gone."""
    found: list[tuple[str, int]] = []
    for ex in await mgmt.exchanges(vhost):
        shovel = replay_of(str(ex.get("name", "")))
        if shovel is None:
            continue
        queue = held_queue(shovel)
        info = await mgmt.queue(vhost, queue)
        if info is None or (info.get("arguments") or {}).get(HELD_ARG) != dlq:
            continue
        try:
            count = await queue_depth(connection, queue)
        except NotFound:
            continue
        if count:
            found.append((queue, count))
    return found

