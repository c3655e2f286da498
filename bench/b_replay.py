"""DLQ replay: queuewatch's loss-free replay vs RabbitMQ's shovel moving the same messages;
plus the time to peek at the first 500 dead letters of the full DLQ."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import aio_pika

from bench import peers
from bench.amqp_tools import DepthProbe, connect, preload
from bench.harness import Bench, NotAvailable, Section, Target, compare, rate_row, verdict
from bench.stats import Stat, fmt_ratio, ratio
from queuewatch import envelope as env
from queuewatch.broker.management import ManagementClient, q
from queuewatch.config import Settings

PEEK = 500
#: A replay slower than this is stopped after count / MIN_RATE seconds (its unreplayed dead
#: letters stay in the DLQ) and its rate taken from the part it moved.
MIN_RATE = 2000.0
DLQ = peers.QUEUE + ".dlq"
#: The baseline shovel's prefetch: the same as queuewatch's replay shovel uses (it moves
#: 10–20% faster than at RabbitMQ's default of 1,000), so the ratio shows what queuewatch
#: adds, not a tuning difference.
SHOVEL_PREFETCH = 2000


def dead_letter(i: int, error_type: str = "TimeoutError") -> aio_pika.Message:
    """A dead letter as the queuewatch worker parks it (headers naming the original route)."""
    now = env.now_ms()
    job_id = env.new_job_id()
    headers: dict[str, Any] = env.job_headers(job_id=job_id, attempt=5)
    headers.update({
        env.H_DEAD_REASON: "failed", env.H_ERROR_TYPE: error_type,
        **env.plain_death_headers("failed", error_type),
        env.H_ERROR_MESSAGE: "upstream did not answer", env.H_FIRST_FAILED_MS: now - 60_000,
        env.H_LAST_FAILED_MS: now, env.H_DEAD_AT_MS: now, env.H_ORIGINAL_EXCHANGE: "",
        env.H_ORIGINAL_ROUTING_KEY: peers.QUEUE, env.H_ORIGINAL_QUEUE: peers.QUEUE,
        env.H_DEAD_QUEUE: peers.QUEUE, env.H_REPLAY_COUNT: 0,
    })
    return aio_pika.Message(
        json.dumps({"n": i, "to": "someone@example.com"}).encode(), message_id=job_id,
        timestamp=time.time(), content_type=env.JSON, headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def _prepare(settings: Settings, count: int, half: bool = False) -> None:
    """``count`` dead letters of ``bench`` in its DLQ, all timeouts (``half``: every other
    one a ``ValueError`` instead)."""
    await peers.setup_queue("queuewatch", settings)
    await preload(settings, DLQ, count, lambda i: dead_letter(
        i, "ValueError" if half and i % 2 else "TimeoutError"))


async def _depth(settings: Settings, queue: str) -> int:
    probe = await DepthProbe.open(settings)
    try:
        return (await probe.counts(queue))[0]
    finally:
        await probe.close()


@contextlib.asynccontextmanager
async def open_dlq(settings: Settings) -> AsyncIterator[Any]:
    """``DeadLetterQueue`` on :data:`DLQ`, with a state directory (its audit log) of its own
    and its own AMQP connection and management client, closed after."""
    from queuewatch.dlq import DeadLetterQueue
    with tempfile.TemporaryDirectory(prefix="qwbench-dlq-") as state:
        st = replace(settings, state_dir=Path(state))
        conn = await connect(st)
        mgmt = ManagementClient(st)
        try:
            yield DeadLetterQueue(conn, mgmt, st, DLQ)
        finally:
            await conn.close()
            await mgmt.aclose()


async def _qw_replay(settings: Settings, count: int, peeks: list[float], facts: ReplayFacts,
                     per_message: bool = False, timeouts: Literal["", "all", "half"] = "",
                     ) -> float:
    """``DeadLetterQueue.replay()`` until the DLQ is empty (a user re-runs a replay that
    stopped early), within ``count / MIN_RATE`` seconds; the rate of what it moved.
    ``per_message``: ``replay(via_shovel=False)``, the path filters and rates take.
    ``timeouts``: ``replay(DeadLetterFilter(error_type="TimeoutError"))`` on a DLQ where all
    or half of the dead letters are timeouts: the rate of dead letters it went through (the
    whole DLQ), and in ``facts.replayed_rates`` the rate of those it replayed."""
    try:
        from queuewatch.dlq import DeadLetterFilter, DeadLetterQueue
    except ImportError as exc:
        raise NotAvailable(f"queuewatch.dlq does not import ({exc})") from exc
    if per_message and "via_shovel" not in inspect.signature(DeadLetterQueue.replay).parameters:
        raise NotAvailable("DeadLetterQueue.replay has no via_shovel option")
    kwargs: dict[str, Any] = {"via_shovel": False} if per_message else {}
    if timeouts:
        kwargs["flt"] = DeadLetterFilter(error_type="TimeoutError")
    matching = count // 2 if timeouts == "half" else count
    await _prepare(settings, count, half=timeouts == "half")
    async with open_dlq(settings) as dlq:
        if per_message:
            t0 = time.perf_counter()
            page = await dlq.peek(0, PEEK)
            peeks.append((time.perf_counter() - t0) * 1000)
            if len(page.items) != min(PEEK, count):
                raise RuntimeError(f"peek returned {len(page.items)} dead letters")
        t0 = time.perf_counter()
        deadline = t0 + max(30.0, count / MIN_RATE)
        calls = 0
        moved = 0
        while moved < matching:
            left = deadline - time.perf_counter()
            if left <= 0:
                facts.timed_out.append(moved)
                break
            calls += 1
            try:
                result = await asyncio.wait_for(dlq.replay(**kwargs), left)
                facts.via.add(str(getattr(result, "via", "messages")))
            except TimeoutError:
                pass
            moved = await _depth(settings, peers.QUEUE)
        elapsed = time.perf_counter() - t0
        if calls > 1:
            facts.calls.append(calls)
    await asyncio.sleep(0.5)  # acks in flight at the return reach the broker
    if moved >= matching:
        facts.left_behind.append(await _depth(settings, DLQ) - (count - matching))
    if moved > matching:
        raise RuntimeError(f"{moved} replayed where {matching} match the filter")
    if timeouts:
        facts.replayed_rates.append(moved / elapsed)
        return (count * moved / matching) / elapsed  # the DLQ it went through
    return moved / elapsed


@dataclass
class ReplayFacts:
    """What the measurements saw besides the rate (for the notes column)."""

    timed_out: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    left_behind: list[int] = field(default_factory=list)
    via: set[str] = field(default_factory=set)
    """How ``replay()`` moved them: ``messages`` and/or ``shovel``."""
    replayed_rates: list[float] = field(default_factory=list)
    """A filtered replay: dead letters replayed per second (one per run)."""

    def note(self, count: int) -> str:
        parts = []
        if self.via:
            parts.append("moved by " + " and ".join(
                {"shovel": "a shovel underneath", "messages": "republishing each"}.get(v, v)
                for v in sorted(self.via)))
        if self.timed_out:
            budget = max(30.0, count / MIN_RATE)
            parts.append(f"{len(self.timed_out)} run(s) stopped at the {budget:.0f} s budget "
                         f"having moved {min(self.timed_out):,}–{max(self.timed_out):,}: "
                         "rate of the part moved")
        if self.calls:
            parts.append(f"replay() returned before the DLQ was empty: {max(self.calls)} calls "
                         "needed in a run")
        if any(self.left_behind):
            parts.append(f"after the move, up to {max(self.left_behind):,} replayed dead "
                         "letters were still in the DLQ (duplicates)")
        return "; ".join(parts)


async def _shovel(settings: Settings, count: int, mgmt: ManagementClient) -> float:
    """RabbitMQ's shovel moving ``count`` dead letters (the whole DLQ)."""
    await _prepare(settings, count)
    return await shovel_rate(settings, count, mgmt)


async def shovel_rate(settings: Settings, count: int, mgmt: ManagementClient) -> float:
    """RabbitMQ's shovel moving the ``count`` dead letters the DLQ holds to the job queue."""
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
            "src-prefetch-count": SHOVEL_PREFETCH,
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
            "queue) preloaded into `bench.dlq`, then moved back to `bench`, loss-free "
            "(each dead letter acked only after its move is confirmed): by a dynamic RabbitMQ "
            "shovel (`ack-mode: on-confirm`, `src-delete-after: queue-length`), timed from "
            "creating it until the destination holds every message (`src-prefetch-count` "
            f"{SHOVEL_PREFETCH}, as queuewatch's); by queuewatch's "
            "`DeadLetterQueue.replay()` as a user calls it (a plain bulk replay takes a "
            "shovel underneath, through a headers exchange that applies the replay-count "
            "guard to each message), timed from the call until it returns, set-up and "
            "clean-up included; by the per-message path (`via_shovel=False`); and filtered, "
            "`replay(DeadLetterFilter(error_type=\"TimeoutError\"))` (`--error-type "
            "TimeoutError`) on a DLQ of the same size where all, or every other one (half), "
            "are timeouts: the shovel underneath, its headers exchange selecting the "
            "timeouts. The half-match replay is compared with the shovel moving the whole "
            "DLQ (dead letters gone through per second) and with the shovel moving only as "
            "many as it replays (replayed per second). Runs interleaved. Ratio: against the "
            "shovel."
        ),
        columns=["mover", "result", "ratio"],
    )
    peeks: list[float] = []
    facts, facts_m = ReplayFacts(), ReplayFacts()
    facts_all, facts_half = ReplayFacts(), ReplayFacts()
    got = await compare(bench, [
        ("replay-shovel", lambda s: _shovel(s, count, bench.mgmt)),
        ("replay-qw", lambda s: _qw_replay(s, count, peeks, facts)),
        ("replay-qw-messages", lambda s: _qw_replay(s, count, peeks, facts_m, per_message=True)),
        ("replay-qw-timeouts", lambda s: _qw_replay(s, count, peeks, facts_all,
                                                    timeouts="all")),
        ("replay-qw-timeouts-half", lambda s: _qw_replay(s, count, peeks, facts_half,
                                                         timeouts="half")),
        ("replay-shovel-half", lambda s: _shovel(s, count // 2, bench.mgmt)),
    ], "/s")
    shovel, why_s = got["replay-shovel"]
    ours, why_q = got["replay-qw"]
    each, why_m = got["replay-qw-messages"]
    all_t, why_a = got["replay-qw-timeouts"]
    half_t, why_h = got["replay-qw-timeouts-half"]
    shovel_half, why_sh = got["replay-shovel-half"]
    half_replayed = (Stat(tuple(facts_half.replayed_rates), "/s")
                     if half_t is not None and facts_half.replayed_rates else None)
    section.rows.append(rate_row("RabbitMQ shovel, on-confirm (baseline)", shovel, shovel,
                                 na=why_s))
    section.rows.append(rate_row("queuewatch replay, default (shovel underneath, guard per "
                                 "message)", ours, shovel, na=why_q, note=facts.note(count)))
    section.rows.append(rate_row("queuewatch replay --per-message (the path of rates and "
                                 "of filters on job ids, text, age)", each, shovel, na=why_m,
                                 note=facts_m.note(count)))
    section.rows.append(rate_row("queuewatch replay --error-type TimeoutError, all match",
                                 all_t, shovel, na=why_a, note=facts_all.note(count)))
    section.rows.append(rate_row("queuewatch replay --error-type TimeoutError, half match: "
                                 "dead letters gone through", half_t, shovel, na=why_h,
                                 note=facts_half.note(count)))
    section.rows.append(rate_row(f"RabbitMQ shovel moving {count // 2:,} (baseline of the "
                                 "next row)", shovel_half, shovel_half, na=why_sh))
    section.rows.append(rate_row(f"queuewatch replay --error-type TimeoutError, half match: "
                                 f"the {count // 2:,} replayed", half_replayed, shovel_half,
                                 na=why_h))
    if peeks:
        section.rows.append(rate_row(f"queuewatch peek of the first {PEEK} (time)",
                                     Stat(tuple(peeks), "ms"), None))
        section.rows[-1].cells["ratio"] = "—"
    r = ratio(ours, shovel)
    section.targets.append(Target("DLQ bulk replay vs shovel", ">= 0.8×", fmt_ratio(r),
                                  verdict(None if r is None else r >= 0.8), why_q or why_s))
    for what, value, base, why in (
            ("filtered replay, all match, vs shovel", all_t, shovel, why_a or why_s),
            ("filtered replay, half match, vs shovel moving the same DLQ", half_t, shovel,
             why_h or why_s),
            ("filtered replay, half match, vs shovel moving as many as it replays",
             half_replayed, shovel_half, why_h or why_sh)):
        r = ratio(value, base)
        section.targets.append(Target(what, ">= 0.8×", fmt_ratio(r),
                                      verdict(None if r is None else r >= 0.8), why))
    return [section]
