"""Issue 14, defect 9: dead-letter queues queuewatch did not create are found from the
dead-letter arguments and policies of the queues that feed them, and a live queue with
consumers is not read by mistake."""

from __future__ import annotations

from queuewatch.dlq.discover import discover
from tests.dlq_adversarial import dramatiq_dead_letters
from tests.helpers import depth, wait_until


async def _is(value, expected) -> bool:  # type: ignore[no-untyped-def]
    return (await value) == expected


async def test_a_foreign_dlq_is_found_and_the_live_queue_is_not_read(
        connection, mgmt, settings, vhost, cli, admin_http):
    # Given 'legacy' (x-dead-letter-routing-key = legacy.dead; no legacy.dlq) with a
    # consumer holding 2 live jobs, 3 of its jobs rejected into legacy.dead; a queue
    # 'orders' dead-lettering by policy into 'parked'; and Dramatiq's rdq / rdq.XQ
    ch = await connection.channel()
    raw = await ch.get_underlay_channel()
    await raw.queue_declare("legacy.dead")
    await raw.queue_declare("legacy", arguments={"x-dead-letter-exchange": "",
                                                  "x-dead-letter-routing-key": "legacy.dead"})
    for n in range(5):
        await raw.basic_publish(f"job {n}".encode(), routing_key="legacy")
    for _ in range(3):
        got = await raw.basic_get("legacy")
        await raw.basic_reject(got.delivery.delivery_tag, requeue=False)
    await wait_until(lambda: _is(depth(connection, "legacy.dead"), 3), what="3 dead letters")
    held: list[object] = []

    async def hold(message: object) -> None:
        held.append(message)  # a live worker: takes jobs, acks none yet

    worker = await (await connection.channel()).get_underlay_channel()
    await worker.basic_consume("legacy", hold)
    await wait_until(lambda: len(held) == 2, what="the worker to hold 2 live jobs")
    admin_http.put(f"/policies/{vhost}/dlx", json={
        "pattern": "^orders$", "apply-to": "queues",
        "definition": {"dead-letter-exchange": "dlx"}}).raise_for_status()
    await raw.exchange_declare("dlx", exchange_type="fanout")
    await raw.queue_declare("parked")
    await raw.queue_bind("parked", "dlx")
    await raw.queue_declare("orders")
    await dramatiq_dead_letters(settings, "rdq", 2)
    # When the DLQs are discovered (the console's picker calls this)
    async def policy_applied() -> bool:
        return any(f.name == "parked" for f in await discover(mgmt, vhost))

    await wait_until(policy_applied, timeout=30, interval=0.5, what="the policy to apply")
    found = {f.name: f for f in await discover(mgmt, vhost)}
    # Then each is found with the queue feeding it
    assert {"legacy.dead", "parked", "rdq.XQ"} <= set(found)
    assert found["legacy.dead"].sources == ("legacy",)
    assert found["parked"].how == ("policy of orders",)
    assert found["rdq.XQ"].sources == ("rdq",)
    assert "legacy" not in found
    # When 'dlq list legacy' runs: it reads legacy.dead, not the live queue
    code, out, err = await cli("dlq", "list", "legacy")
    assert code == 0 and err == "" and out.startswith("legacy.dead: 3 dead letters"), (out, err)
    code, out, err = await cli("dlq", "list", "orders")
    assert code == 0 and out.startswith("parked: 0 dead letters"), (out, err)
    code, out, err = await cli("dlq", "list", "rdq")
    assert code == 0 and out.startswith("rdq.XQ: 2 dead letters"), (out, err)
    # And reading the live queue itself is refused in one line while it has a consumer
    await raw.queue_declare("live")
    await raw.basic_publish(b"live job", routing_key="live")
    await worker.basic_consume("live", hold)
    await wait_until(lambda: len(held) == 3, what="the worker to hold the live job")
    code, out, err = await cli("dlq", "list", "live")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "1 consumer" in err and "--force-read" in err
    # And nothing was taken from the worker (it still holds its jobs, none came twice)
    assert len(held) == 3
    # And --force-read reads it anyway
    code, out, err = await cli("dlq", "list", "live", "--force-read")
    assert code == 0 and out.startswith("live: 0 dead letters"), (out, err)
    await ch.close()
