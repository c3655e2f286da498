"""Tried, not kept (issue 16 item 6), with the plain shovel moving the whole DLQ beside it,
interleaved, on DLQs where every other dead letter is a timeout. BENCHMARKS.md has the
figures. ::

    PYTHONPATH=. .venv/bin/python -m bench.tried_replay hold [COUNT [RUNS]]
    PYTHONPATH=. .venv/bin/python -m bench.tried_replay version2 [COUNT [RUNS]]

``hold``: a filtered replay that never takes the unmatched out of the DLQ. A client consumes the whole DLQ without acking, holds the dead letters the
filter leaves out (unacked), nacks the matched ones back to the head (requeue), and a plain
shovel with ``src-delete-after: <matched>`` moves exactly those; closing the channel then
puts the held ones back where they were.

Prints both rates, their ratios and where the held replay spent its time (reading in
Python, the requeue of the matched, the shovel moving them).

``version2``: queuewatch's filtered replay as shipped (all and half matching) and the plain
shovel, every queue of the vhost in classic queue version 2 (policy ``queue-version: 2``):
does the newer queue index take the held back half in more cheaply?
"""
import asyncio
import sys
import time
import uuid
from typing import Any

from bench import peers
from bench.amqp_tools import DepthProbe, connect
from bench.b_replay import DLQ, SHOVEL_PREFETCH, ReplayFacts, _prepare, _qw_replay, _shovel
from bench.harness import Bench, session
from queuewatch import envelope as env
from queuewatch.broker.management import ManagementClient, q
from queuewatch.config import Settings


async def hold(settings: Settings, count: int, mgmt: ManagementClient, half: bool = True,
               detail: list[tuple[float, float, float, float, int, int, int]] | None = None,
               ) -> float:
    await _prepare(settings, count, half=half)
    vhost = settings.effective_vhost
    conn = await connect(settings)
    probe = await DepthProbe.open(settings)
    try:
        t0 = time.perf_counter()
        ch = await conn.channel()
        raw = await ch.get_underlay_channel()
        matched: list[int] = []
        seen = 0
        done = asyncio.get_running_loop().create_future()

        def on_message(msg: Any) -> None:
            nonlocal seen
            seen += 1
            h = msg.header.properties.headers or {}
            if h.get(env.H_ERROR_NAME_PLAIN) == "TimeoutError" or h.get(env.H_ERROR_TYPE_PLAIN) == "TimeoutError":
                matched.append(msg.delivery.delivery_tag)
            if seen >= count and not done.done():
                done.set_result(None)

        async def cb(msg: Any) -> None:
            on_message(msg)

        await raw.basic_qos(prefetch_count=0)
        ok = await raw.basic_consume(DLQ, cb, no_ack=False)
        await done
        t1 = time.perf_counter()
        await raw.basic_cancel(ok.consumer_tag)
        await asyncio.gather(*(raw.basic_nack(tag, multiple=False, requeue=True)
                               for tag in matched))
        # barrier: a round trip on the same channel
        await raw.basic_qos(prefetch_count=0)
        t2 = time.perf_counter()
        k = len(matched)
        name = f"bench-hold-{uuid.uuid4().hex[:6]}"
        uri = f"amqp:///{q(vhost)}"
        await mgmt.put_shovel(vhost, name, {
            "src-protocol": "amqp091", "src-uri": uri, "src-queue": DLQ,
            "dest-protocol": "amqp091", "dest-uri": uri, "dest-queue": peers.QUEUE,
            "ack-mode": "on-confirm", "src-delete-after": k,
            "src-prefetch-count": min(SHOVEL_PREFETCH, k),
        })
        while True:
            moved, _ = await probe.counts(peers.QUEUE)
            if moved >= k:
                break
            await asyncio.sleep(0.02)
        t3 = time.perf_counter()
        await ch.close()
        elapsed = time.perf_counter() - t0
        await mgmt.delete_shovel(vhost, name)
        await asyncio.sleep(0.3)
        left, _ = await probe.counts(DLQ)
        moved, _ = await probe.counts(peers.QUEUE)
        if detail is not None:
            detail.append((t1 - t0, t2 - t1, t3 - t2, elapsed - (t3 - t0), k, moved, left))
        return count / elapsed
    finally:
        await probe.close()
        await conn.close()


async def version2(count: int, runs: int) -> None:
    async with session() as (_settings, mgmt, bench):
        await _version2(count, runs, mgmt, bench)


async def _version2(count: int, runs: int, mgmt: ManagementClient, bench: Bench) -> None:
    res: dict[str, list[float]] = {"shovel": [], "half": [], "all": []}
    for _ in range(runs):
        for key, rates in res.items():
            async with bench.vhost("tried-v2") as st:
                await mgmt.request("PUT", f"/policies/{q(st.effective_vhost)}/v2", json={
                    "pattern": ".*", "apply-to": "queues", "definition": {"queue-version": 2}})
                if key == "shovel":
                    rates.append(await _shovel(st, count, mgmt))
                else:
                    rates.append(await _qw_replay(st, count, [], ReplayFacts(), timeouts=key))
                info = await mgmt.queue(st.effective_vhost, DLQ) or {}
                policy = info.get("effective_policy_definition") or {}
                if policy.get("queue-version") != 2:
                    raise RuntimeError(f"the DLQ's policy is {policy}, not queue-version 2")
    for k, v in res.items():
        print(k, [f"{x:,.0f}" for x in v])
    for k in ("half", "all"):
        print(f"{k}/shovel", [f"{a / b:.2f}" for a, b in zip(res[k], res["shovel"], strict=True)])


async def hold_vs_shovel(count: int, runs: int) -> None:
    async with session() as (_settings, mgmt, bench):
        await _hold_vs_shovel(count, runs, mgmt, bench)


async def _hold_vs_shovel(count: int, runs: int, mgmt: ManagementClient, bench: Bench) -> None:
    res: dict[str, list[float]] = {"shovel": [], "hold": []}
    details: list[tuple[float, float, float, float, int, int, int]] = []
    for _ in range(runs):
        async with bench.vhost("proto-shovel") as st:
            res["shovel"].append(await _shovel(st, count, mgmt))
        async with bench.vhost("proto-hold") as st:
            res["hold"].append(await hold(st, count, mgmt, detail=details))
    for k, v in res.items():
        print(k, [f"{x:,.0f}" for x in v])
    print("ratios", [f"{h / s:.2f}" for h, s in zip(res["hold"], res["shovel"], strict=True)])
    for d in details:
        read, nack, shovel, close, k, moved, left = d
        print(f"read {read:.2f}s requeue {nack:.2f}s shovel {shovel:.2f}s close {close:.2f}s "
              f"matched {k} moved {moved} left {left}")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what not in ("hold", "version2"):
        sys.exit("usage: python -m bench.tried_replay hold|version2 [COUNT [RUNS]]")
    run = hold_vs_shovel if what == "hold" else version2
    asyncio.run(run(int(sys.argv[2]) if len(sys.argv) > 2 else 20000,
                    int(sys.argv[3]) if len(sys.argv) > 3 else 3))
