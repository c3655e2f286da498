"""Declare a :class:`~queuewatch.topology.Topology` on a broker.

Declaring is idempotent: the same topology twice leaves the broker as it was. Before touching
a queue that already exists we compare its arguments (via the management API) and raise
:class:`TopologyMismatch` listing every difference; without a management client we still
turn the broker's ``PRECONDITION_FAILED`` into the same error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.common import FieldTable

from queuewatch.broker.management import ManagementClient
from queuewatch.envelope import H_TARGET
from queuewatch.errors import ArgumentDiff, DelayLevelsMismatch, TopologyError, TopologyMismatch
from queuewatch.topology import (
    DELIVERY_EXCHANGE,
    MAX_DELAY_LEVELS,
    Topology,
    delay_level_arguments,
    delay_queue_name,
    due_queue_arguments,
    due_queue_name,
)

_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for queue '(?P<queue>[^']+)' in vhost '(?P<vhost>[^']*)': "
    r"received (?P<requested>.+?) but current is (?P<current>.+)$"
)


@dataclass
class DeclareResult:
    """What a declare did: queues that were created and queues that were already right."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def queues(self) -> list[str]:
        return self.created + self.unchanged


@dataclass(frozen=True)
class _QueueDecl:
    name: str
    arguments: dict[str, Any]
    queue_type: str


def planned_queues(topology: Topology) -> list[_QueueDecl]:
    """Every queue the topology declares, in declaration order."""
    decls = [
        _QueueDecl(delay_queue_name(n), delay_level_arguments(n), "quorum")
        for n in range(topology.delay_levels)
    ]
    for spec in topology.queues:
        if spec.dlq:
            decls.append(_QueueDecl(spec.dlq_name, spec.dlq_arguments(), spec.queue_type))
        decls.append(_QueueDecl(spec.name, spec.arguments(), spec.queue_type))
        decls.append(_QueueDecl(due_queue_name(spec.name), due_queue_arguments(spec.name), "quorum"))
    return decls


def _norm(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def diff_arguments(
    current: Mapping[str, Any], current_type: str, decl: _QueueDecl
) -> list[ArgumentDiff]:
    """Arguments whose value on the broker differs from the requested declaration."""
    diffs: list[ArgumentDiff] = []
    if current_type != decl.queue_type:
        diffs.append(ArgumentDiff("x-queue-type", current_type, decl.queue_type))
    keys = (set(current) | set(decl.arguments)) - {"x-queue-type"}
    for key in sorted(keys):
        cur, req = _norm(current.get(key)), _norm(decl.arguments.get(key))
        if cur != req:
            diffs.append(ArgumentDiff(key, cur, req))
    return diffs


def mismatch_from_precondition(exc: BaseException, fallback_queue: str, vhost: str) -> TopologyMismatch | None:
    """Parse RabbitMQ's ``inequivalent arg`` reply into a :class:`TopologyMismatch`."""
    text = str(exc)
    for chunk in re.split(r"PRECONDITION_FAILED - ", text):
        m = _INEQUIVALENT.search(chunk.strip().strip("')\""))
        if m:
            return TopologyMismatch(
                m["queue"], m["vhost"],
                [ArgumentDiff(m["arg"], m["current"].strip("'\" )"), m["requested"].strip("'\" "))],
            )
    if "inequivalent" in text:
        return TopologyMismatch(fallback_queue, vhost, [ArgumentDiff("?", "?", text)])
    return None


async def existing_delay_levels(connection: AbstractConnection) -> int:
    """How many delay levels the vhost of ``connection`` has: its exchanges
    ``queuewatch.delay.0``, ``.1``, ... up to the first missing one (passive declares on a
    channel of their own, which the first missing one closes)."""
    channel = await connection.channel()
    levels = 0
    try:
        while levels <= MAX_DELAY_LEVELS:
            await channel.declare_exchange(delay_queue_name(levels), passive=True)
            levels += 1
    except aiormq.exceptions.ChannelNotFoundEntity:
        pass
    finally:
        if not channel.is_closed:
            await channel.close()
    return levels


async def declare_topology(
    connection: AbstractConnection,
    topology: Topology,
    vhost: str,
    management: ManagementClient | None = None,
) -> DeclareResult:
    """Create every exchange, queue and binding of ``topology``; check existing ones first
    (:class:`TopologyMismatch`; :class:`DelayLevelsMismatch`: the delay levels' bindings
    depend on their number, and two numbers' bindings together route each message twice)."""
    have = await existing_delay_levels(connection)
    if have and have != topology.delay_levels:
        raise DelayLevelsMismatch(vhost, have, topology.delay_levels)
    result = DeclareResult()
    decls = planned_queues(topology)
    existing: dict[str, dict[str, Any] | None] = {}
    if management is not None:
        mismatches: list[TopologyMismatch] = []
        for decl in decls:
            info = await management.queue(vhost, decl.name)
            existing[decl.name] = info
            if info is None:
                continue
            diffs = diff_arguments(info.get("arguments") or {}, str(info.get("type", "classic")), decl)
            if diffs:
                mismatches.append(TopologyMismatch(decl.name, vhost, diffs))
        if mismatches:
            raise mismatches[0]

    channel = await connection.channel()
    try:
        await _declare_exchanges(channel, topology)
        current = ""
        try:
            for decl in decls:
                current = decl.name
                await channel.declare_queue(decl.name, durable=True, arguments=decl.arguments)
                if management is None or existing.get(decl.name) is None:
                    result.created.append(decl.name)
                else:
                    result.unchanged.append(decl.name)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            mismatch = mismatch_from_precondition(exc, current, vhost)
            raise (mismatch or TopologyError(f"declaring {current!r} failed: {exc}")) from exc
        await _bind(channel, topology)
    except aiormq.exceptions.AMQPError as exc:
        if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
            raise
        raise TopologyError(f"declaring the topology in vhost {vhost!r} failed: {exc}") from exc
    finally:
        if not channel.is_closed:
            await channel.close()
    return result


async def _declare_exchanges(channel: AbstractChannel, topology: Topology) -> None:
    await channel.declare_exchange(DELIVERY_EXCHANGE, aio_pika.ExchangeType.HEADERS, durable=True)
    for n in range(topology.delay_levels):
        await channel.declare_exchange(delay_queue_name(n), aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(topology.telemetry_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(topology.control_exchange, aio_pika.ExchangeType.TOPIC, durable=True)


async def _bind(channel: AbstractChannel, topology: Topology) -> None:
    levels = topology.delay_levels
    for n in range(levels):
        name = delay_queue_name(n)
        prefix = "*." * (levels - 1 - n)
        queue = await channel.get_queue(name, ensure=False)
        await queue.bind(name, routing_key=f"{prefix}1.#")
        onward = DELIVERY_EXCHANGE if n == 0 else delay_queue_name(n - 1)
        ex = await channel.get_exchange(onward, ensure=False)
        await ex.bind(name, routing_key=f"{prefix}0.#")
    for spec in topology.queues:
        match: FieldTable = {"x-match": "all", H_TARGET: spec.name}
        due = await channel.get_queue(due_queue_name(spec.name), ensure=False)
        await due.bind(DELIVERY_EXCHANGE, arguments=match)
        # Topologies declared before due queues bound the job queue itself: a job due then
        # would reach it twice (and the full-queue wait would be shared again). Unbinding a
        # binding that is not there is a no-op.
        queue = await channel.get_queue(spec.name, ensure=False)
        await queue.unbind(DELIVERY_EXCHANGE, arguments=match)
