"""DLQ replay: queuewatch's loss-free replay vs RabbitMQ's shovel moving the same messages;
plus the time to peek at the first 500 dead letters of the full DLQ."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import aio_pika

from bench import peers
from bench.amqp_tools import DepthProbe, connect, preload
from bench.harness import Bench, NotAvailable, Section, Target, compare, rate_row, verdict
from bench.stats import Stat, fmt_ratio, ratio
from queuewatch import envelope as env
from queuewatch.config import Settings
from queuewatch.management import ManagementClient, q

PEEK = 500
#: A replay slower than this is stopped after count / MIN_RATE seconds (its unreplayed dead
#: letters stay in the DLQ) and its rate taken from the part it moved.
MIN_RATE = 1000.0
DLQ = peers.QUEUE + ".dlq"


def dead_letter(i: int) -> aio_pika.Message:
    """A dead letter as the queuewatch worker parks it (headers naming the original route)."""
    now = env.now_ms()
    job_id = env.new_job_id()
    headers: dict[str, Any] = env.job_headers(job_id=job_id, attempt=5)
    headers.update({
        env.H_DEAD_REASON: "failed", env.H_ERROR_TYPE: "TimeoutError",
        env.H_ERROR_MESSAGE: "upstream did not answer", env.H_FIRST_FAILED_MS: now - 60_000,
        env.H_LAST_FAILED_MS: now, env.H_DEAD_AT_MS: now, env.H_ORIGINAL_EXCHANGE: "",
        env.H_ORIGINAL_ROUTING_KEY: peers.QUEUE, env.H_ORIGINAL_QUEUE: peers.QUEUE,
    })
    return aio_pika.Message(
        json.dumps({"n": i, "to": "someone@example.com"}).encode(), message_id=job_id,
        timestamp=time.time(), content_type=env.JSON, headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def _prepare(settings: Settings, count: int) -> None:
    await peers.setup_queue("queuewatch", settings)
    await preload(settings, DLQ, count, dead_letter)


async def _depth(settings: Settings, queue: str) -> int:
    probe = await DepthProbe.open(settings)
    try:
        return (await probe.counts(queue))[0]
    finally:
        await probe.close()


async def _qw_replay(settings: Settings, count: int, peeks: list[float],
                     left_behind: list[int], timed_out: list[int]) -> float:
    try:
        from queuewatch.dlq import DeadLetterQueue
    except ImportError as exc:
        raise NotAvailable(f"queuewatch.dlq does not import ({exc})") from exc
    await _prepare(settings, count)
    with tempfile.TemporaryDirectory(prefix="qwbench-dlq-") as state:
        st = replace(settings, state_dir=Path(state))
        conn = await connect(st)
        try:
            dlq = DeadLetterQueue(conn, None, st, DLQ)
            t0 = time.perf_counter()
            page = await dlq.peek(0, PEEK)
            peeks.append((time.perf_counter() - t0) * 1000)
            if len(page.items) != min(PEEK, count):
                raise RuntimeError(f"peek returned {len(page.items)} dead letters")
            t0 = time.perf_counter()
            limit = max(30.0, count / MIN_RATE)
            try:
                result = await asyncio.wait_for(dlq.replay(), limit)
            except TimeoutError:
                # too slow to wait for: the rate of the part it moved (the rest stays put)
                moved = await _depth(settings, peers.QUEUE)
                timed_out.append(moved)
                return moved / (time.perf_counter() - t0)
            elapsed = time.perf_counter() - t0
        finally:
            await conn.close()
    moved = await _depth(settings, peers.QUEUE)
    if result.replayed != count or moved != count:
        raise RuntimeError(f"replayed {result.replayed}, {moved} in the queue, of {count}")
    await asyncio.sleep(0.5)  # acks in flight at the return reach the broker
    left_behind.append(await _depth(settings, DLQ))
    return count / elapsed


async def _shovel(settings: Settings, count: int, mgmt: ManagementClient) -> float:
    await _prepare(settings, count)
    vhost = settings.effective_vhost
    name = f"bench-move-{uuid.uuid4().hex[:6]}"
    uri = f"amqp:///{q(vhost)}"
    probe = await DepthProbe.open(settings)
    try:
        t0 = time.perf_counter()
        await mgmt.put_shovel(vhost, name, {
            "src-protocol": "amqp091", "src-uri": uri, "src-queue": DLQ,
            "dest-protocol": "amqp091", "dest-uri": uri, "dest-queue": peers.QUEUE,
            "ack-mode": "on-confirm", "src-delete-after": "queue-length",
        })
        deadline = time.monotonic() + 600
        while True:
            moved, _ = await probe.counts(peers.QUEUE)
            if moved >= count:
                elapsed = time.perf_counter() - t0
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the shovel moved {moved} of {count} in 600 s")
            await asyncio.sleep(0.02)
        left, _ = await probe.counts(DLQ)
    finally:
        await probe.close()
        await mgmt.delete_shovel(vhost, name)
    if left:
        raise RuntimeError(f"{left} messages still in the source after the move")
    return count / elapsed


async def run(bench: Bench) -> list[Section]:
    count = bench.size(100_000, 500)
    section = Section(
        key="replay",
        title=f"DLQ replay of {count:,} dead letters",
        measures=(
            f"{count:,} persistent dead letters (queuewatch headers naming the original "
            "queue) preloaded into `bench.dlq`, then moved back to `bench`: by queuewatch's "
            "`DeadLetterQueue.replay()` (each dead letter acked only after its republish is "
            "confirmed), and by a dynamic RabbitMQ shovel (`ack-mode: on-confirm`, "
            "`src-delete-after: queue-length`), timed from creating the shovel until the "
            "destination holds every message. Runs interleaved. Ratio: against the shovel."
        ),
        columns=["mover", "result", "ratio"],
    )
    peeks: list[float] = []
    left: list[int] = []
    timed_out: list[int] = []
    got = await compare(bench, [
        ("replay-shovel", lambda s: _shovel(s, count, bench.mgmt)),
        ("replay-qw", lambda s: _qw_replay(s, count, peeks, left, timed_out)),
    ], "/s")
    shovel, why_s = got["replay-shovel"]
    ours, why_q = got["replay-qw"]
    section.rows.append(rate_row("RabbitMQ shovel, on-confirm (baseline)", shovel, shovel,
                                 na=why_s))
    dup = ""
    if timed_out:
        dup = (f"{len(timed_out)} run(s) stopped after {max(30.0, count / MIN_RATE):.0f} s "
               f"having moved {min(timed_out):,}–{max(timed_out):,}: rate of the part moved. ")
    if any(left):
        dup += (f"after replay() returned, {max(left):,} of {count:,} replayed dead letters "
               "were still in the DLQ (their acks never reached the broker: duplicates)")
    section.rows.append(rate_row("queuewatch replay (loss-free)", ours, shovel,
                                 na=why_q, note=dup))
    if peeks:
        section.rows.append(rate_row(f"queuewatch peek of the first {PEEK} (time)",
                                     Stat(tuple(peeks), "ms"), None))
        section.rows[-1].cells["ratio"] = "—"
    r = ratio(ours, shovel)
    section.targets.append(Target("DLQ replay vs shovel", ">= 0.8×", fmt_ratio(r),
                                  verdict(None if r is None else r >= 0.8), why_q or why_s))
    return [section]
