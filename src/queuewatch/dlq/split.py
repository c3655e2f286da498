"""The part of a replay filter RabbitMQ applies itself: header bindings of the replay
shovel's exchanges (:mod:`queuewatch.dlq.shovel`).

A filtered replay of a big DLQ is several times faster when the broker moves the matching
dead letters than when Python republishes each one. A headers exchange ignores headers
named ``x-...``, so the worker writes the reason (in lower case) and the error type (and its
last dotted part) a second time without the prefix (:func:`queuewatch.envelope.
plain_death_headers`). On those, a binding selects **exactly** what
:meth:`DeadLetterFilter.matches` selects for ``error_type`` (exact, or the last dotted part)
and ``reason`` (case-insensitive):

* the split exchange sends on to the job queue the dead letters of that queue, below the
  replay limit, that match (:func:`header_sets`);
* what it does not send on is held back to the tail of the DLQ, in its order. Among it, a
  dead letter of that queue, below the limit and carrying the plain headers, surely does
  not match (:func:`settled_sets`): it goes straight back. Anything else (parked before
  the worker wrote the plain headers, foreign, of another queue, at the replay limit) also
  leaves a mark in a one-message "look" queue, and only then does the per-message replay
  look at what was held back, with the full filter, to replay what the broker could not
  and report what stays. What is replayed is exactly what a dry run counts.
"""

from __future__ import annotations

from typing import Any

from queuewatch import envelope as env
from queuewatch.broker.wire import Connection
from queuewatch.dlq.channel import raw_channel
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.dlq.model import REPLAY_SHOVEL_PREFIX, DeadLetter
from queuewatch.dlq.replay import ReplayOptions
from queuewatch.dlq.watch import OP_TIMEOUT, bounded


def broker_can_filter(flt: DeadLetterFilter) -> bool:
    """Whether the broker can apply ``flt``: empty, or only a (non-empty) error type and/or
    reason. Job ids, text, age and any other criterion need the per-message replay."""
    if flt != DeadLetterFilter(error_type=flt.error_type, reason=flt.reason):
        return False
    return flt.error_type != "" and flt.reason != ""


def _error_key(error_type: str) -> str:
    """The plain header an error type filter compares: with a dot, only the full type can
    be equal; without one, the last dotted part is equal exactly when the filter matches."""
    return env.H_ERROR_TYPE_PLAIN if "." in error_type else env.H_ERROR_NAME_PLAIN


def header_sets(flt: DeadLetterFilter) -> list[dict[str, Any]]:
    """Header values (``x-match: all``, beside the queue and the replay count) that select
    the dead letters ``flt`` matches. A ``None`` value: the header must be there (any
    value); the reason must be there for the error type to count (as in
    :func:`queuewatch.dlq.model.death_info`)."""
    if flt.is_empty:
        return [{}]
    match: dict[str, Any] = {env.H_DEAD_REASON_PLAIN: None}
    if flt.reason is not None:
        match[env.H_DEAD_REASON_PLAIN] = flt.reason.lower()
    if flt.error_type is not None:
        match[_error_key(flt.error_type)] = flt.error_type
    return [match]


def settled_sets(flt: DeadLetterFilter) -> list[dict[str, Any]]:
    """Headers (``x-match: all``, beside the queue and a replay count below the limit) of a
    held back dead letter that surely does not match ``flt``: it carries every plain header
    :func:`header_sets` compares, so the split exchange judged it exactly. None for an empty
    filter (every dead letter of the queue below the limit was sent on)."""
    if flt.is_empty:
        return []
    return [{k: None for k in header_sets(flt)[0]}]


def broker_routes(dl: DeadLetter, flt: DeadLetterFilter, force: bool, max_replays: int) -> bool:
    """Whether the split exchange would send ``dl`` on (for the share of the DLQ's head the
    broker moves: below a threshold, the per-message replay is quicker)."""
    h = dl.headers
    if env.H_DEAD_QUEUE not in h or env.H_REPLAY_COUNT not in h:
        return False
    if not force and dl.replay_count >= max_replays:
        return False
    return any(all(k in h and (v is None or _text(h[k]) == v) for k, v in s.items())
               for s in header_sets(flt))


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value


def exchange_names(shovel: str) -> tuple[str, str]:
    """(split exchange, held-back exchange) of a replay shovel."""
    split = env.REPLAY_EXCHANGE_PREFIX + shovel.removeprefix(REPLAY_SHOVEL_PREFIX)
    return split, split + ".held"


def replay_of(exchange: str) -> str | None:
    """The replay shovel whose split exchange ``exchange`` is, or None (another exchange,
    or a replay's held back or look exchange)."""
    rest = exchange.removeprefix(env.REPLAY_EXCHANGE_PREFIX)
    if rest == exchange or "." in rest:
        return None
    return REPLAY_SHOVEL_PREFIX + rest


def look_names(shovel: str) -> tuple[str, str]:
    """(exchange, queue) where a held back dead letter the per-message replay must look at
    leaves its mark (see :mod:`queuewatch.dlq.split`)."""
    split, held = exchange_names(shovel)
    return held + ".look", split + ".look"


async def declare(connection: Connection, dest: str, shovel: str, opts: ReplayOptions,
                  back: str) -> None:
    """The replay shovel's exchanges: ``split`` (headers) sends on to ``dest`` the dead
    letters of ``dest`` below the replay limit that the filter selects; the rest goes to
    ``held`` (headers), which sends the surely settled ones to ``back`` and the others to
    ``look`` (fanout): to ``back`` and a mark in the look queue. ``back``: the DLQ
    itself, or a queue of the replay's own (:mod:`queuewatch.dlq.held`)."""
    split, held = exchange_names(shovel)
    counts: list[int | None] = [None] if opts.force else list(range(opts.max_replays))
    allowed = [{"x-match": "all", env.H_DEAD_QUEUE: dest, env.H_REPLAY_COUNT: n, **more}
               for n in counts  # None: any value (the header must be there)
               for more in header_sets(opts.flt)]
    settled = [{"x-match": "all", env.H_DEAD_QUEUE: dest, env.H_REPLAY_COUNT: n, **more}
               for n in counts for more in settled_sets(opts.flt)]
    look_x, look_q = look_names(shovel)
    what = "declare an exchange"
    async with raw_channel(connection) as ch:
        # held back: back to the DLQ; what is not surely settled also marks the look queue
        await bounded(ch.queue_declare(look_q, durable=False, arguments={"x-max-length": 1}),
                      OP_TIMEOUT, "declare a queue")
        await bounded(ch.exchange_declare(look_x, exchange_type="fanout", durable=True),
                      OP_TIMEOUT, what)
        for target in (back, look_q):
            await bounded(ch.queue_bind(target, look_x, routing_key=""), OP_TIMEOUT,
                          "bind a queue")
        await bounded(ch.exchange_declare(held, exchange_type="headers", durable=True,
                                          arguments={"alternate-exchange": look_x}),
                      OP_TIMEOUT, what)
        for args in settled:
            await bounded(ch.queue_bind(back, held, routing_key="", arguments=args),
                          OP_TIMEOUT, "bind a queue")
        await bounded(ch.exchange_declare(split, exchange_type="headers", durable=True,
                                          arguments={"alternate-exchange": held}),
                      OP_TIMEOUT, what)
        for args in allowed:
            await bounded(ch.queue_bind(dest, split, routing_key="", arguments=args),
                          OP_TIMEOUT, "bind a queue")


async def drop(connection: Connection, shovel: str) -> None:
    """Delete the replay shovel's exchanges and look queue (deleting what is gone is fine)."""
    look_x, look_q = look_names(shovel)
    async with raw_channel(connection) as ch:
        for name in (*exchange_names(shovel), look_x):
            await bounded(ch.exchange_delete(name), OP_TIMEOUT, "delete an exchange")
        await bounded(ch.queue_delete(look_q), OP_TIMEOUT, "delete a queue")
