"""A replay into a job queue with a length limit (found in a QA pass, 2026-12-01).

* Overflow ``drop-head`` (RabbitMQ's default): RabbitMQ confirms each republish, then drops
  the oldest messages past the limit. Before: 4,000 dead letters replayed into a queue of
  ``x-max-length 1500``, per message or by the shovel, "replayed 4000", exit 0, and 2,500
  were gone. Now those dead letters stay in the DLQ, reported ``drops-head``.
* Overflow ``reject-publish``: the queue nacks what does not fit. The per-message replay
  reported that already; the shovel put the nacked dead letters back in the DLQ and nobody
  counted them ("replayed 1500" of 4,000, exit 0; with a filter, the refused timeouts were
  counted as not matching). Now the shovel is taken only when the queue has room, and what
  still comes back refused is looked at and reported.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from queuewatch.dlq import DeadLetterQueue
from queuewatch.dlq.filters import DeadLetterFilter
from queuewatch.topology import QueueSpec
from tests.helpers import Ledger, consumers, declare, depth, wait_until
from tests.integration.test_dlq_support import dead_headers, publish_dead_letters, take_all_ids


async def _parked(connection, n: int, every_other_timeout: bool = False) -> Ledger:  # type: ignore[no-untyped-def]
    def headers(i: int) -> dict[str, object]:
        kind = "TimeoutError" if not every_other_timeout or i % 2 == 0 else "KeyError"
        return dead_headers("jobs", error_type=kind)

    ids = await publish_dead_letters(connection, "jobs", n, headers=headers)
    return Ledger(sent=set(ids), confirmed=set(ids))


async def _count(connection, ledger: Ledger) -> dict[str, object]:  # type: ignore[no-untyped-def]
    async def none_consume() -> bool:
        return await consumers(connection, "jobs.dlq") == 0

    await wait_until(none_consume, timeout=30, what="the replay's consumers gone")
    ledger.record_received(
        [i for i in await take_all_ids(connection, "jobs") if not i.startswith("fill-")])
    ledger.record_received(await take_all_ids(connection, "jobs.dlq"))
    return ledger.summary()


@pytest.mark.parametrize("via", [False, None])
async def test_replay_into_a_queue_that_drops_its_head_keeps_them(
        cli, connection, settings, vhost, via):
    # Given 1,200 dead letters of 'jobs', a queue with a length limit of 500 that drops
    # its oldest messages (RabbitMQ's default overflow)
    ch = await connection.channel()
    await ch.declare_queue("jobs", durable=True, arguments={"x-max-length": 500})
    await ch.declare_queue("jobs.dlq", durable=True)
    await ch.close()
    ledger = await _parked(connection, 1200)
    # When a dry run, then a replay (per message; or the automatic choice: a shovel would
    # fit a plain bulk replay of 1,200)
    code, out, _ = await cli("dlq", "replay", "jobs", "--dry-run")
    assert code == 1 and "would replay 0" in out and "drops-head" in out, out
    res = await DeadLetterQueue(connection, None, settings, "jobs.dlq").replay(via_shovel=via)
    # Then nothing is replayed: every dead letter stays in the DLQ, reported (exit 1 in
    # the CLI), and none is lost
    assert res.replayed == 0 and res.count("drops-head") == 1200 and res.outcome == "partial"
    assert "x-max-length 500" in res.skipped[0].detail, res.skipped[0]
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary


async def test_a_route_through_an_exchange_to_a_queue_that_drops_its_head(
        cli, connection, settings, vhost):
    # Given dead letters whose route is the direct exchange 'orders' -> 'new', bound to
    # 'small' (a length limit that drops its head) and not to 'other'
    ch = await connection.channel()
    orders = await ch.declare_exchange("orders", aio_pika.ExchangeType.DIRECT)
    small = await ch.declare_queue("small", arguments={"x-max-length": 1})
    other = await ch.declare_queue("other", arguments={"x-max-length": 1})
    await small.bind(orders, routing_key="new")
    await other.bind(orders, routing_key="old")
    await ch.declare_queue("orders.dlq")
    for i in range(3):
        headers = {**dead_headers("small"), "x-qw-original-exchange": "orders",
                   "x-qw-original-routing-key": "new"}
        await ch.default_exchange.publish(
            aio_pika.Message(b"{}", message_id=f"o{i}", headers=headers), "orders.dlq")
    await ch.close()
    # When replayed, Then they stay, reported, naming the queue
    code, out, _ = await cli("dlq", "replay", "orders.dlq", "--yes")
    assert code == 1 and out.count("drops-head") == 3 and "'small'" in out, out
    assert await depth(connection, "orders.dlq") == 3


async def test_a_bulk_replay_into_a_full_queue_reports_what_stays(cli, connection, settings,
                                                                  vhost):
    # Given 2,000 dead letters and 'jobs' with room for 500 (reject-publish)
    await declare(connection, vhost, QueueSpec("jobs", max_priority=0, max_length=500),
                  delay_levels=1)
    ledger = await _parked(connection, 2000)
    # When a replay requires the shovel, Then it is refused with one line, before anything
    # moved
    code, _out, err = await cli("dlq", "replay", "jobs", "--yes", "--via-shovel")
    assert code == 2 and "has room for 500 of the 2000" in err, err
    # When the plain bulk replay runs (it would have taken the shovel)
    code, out, _ = await cli("dlq", "replay", "jobs", "--yes")
    # Then it says 500 replayed and 1,500 kept, refused by the full queue, exit 1; none lost
    assert code == 1 and "replayed 500" in out and "publish-failed" in out, out
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary
    assert summary["received_unique"] == 2000


@pytest.mark.slow
@pytest.mark.parametrize("flt", [None, "TimeoutError"])
async def test_a_shovel_refused_by_a_queue_fuller_than_its_statistics_reports_it(
        connection, mgmt, settings, vhost, flt):
    # Given 4,000 dead letters (every other one a timeout), and 'jobs' (limit 5,000,
    # reject-publish) filled with 3,500 just after its statistics were last published:
    # by them, it has room for all
    await declare(connection, vhost, QueueSpec("jobs", max_priority=0, max_length=5000),
                  delay_levels=1)
    ledger = await _parked(connection, 4000, every_other_timeout=True)
    await asyncio.sleep(5.5)
    ch = await connection.channel(publisher_confirms=True)
    await asyncio.gather(*[ch.default_exchange.publish(
        aio_pika.Message(b"x", message_id=f"fill-{i}"), "jobs") for i in range(3500)])
    await ch.close()
    # When the bulk replay runs (the shovel, if the statistics are still old)
    res = await DeadLetterQueue(connection, mgmt, settings, "jobs.dlq").replay(
        DeadLetterFilter(error_type=flt) if flt else None)
    print(f"\nvia {res.via}: replayed {res.replayed}, refused {res.count('publish-failed')}")
    # Then what the full queue refused is reported, not counted as replayed or left out
    assert res.replayed == 1500 and res.outcome == "partial"
    assert res.count("publish-failed") == (2500 if flt is None else 500)
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary
