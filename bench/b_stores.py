"""Where job events live: the RabbitMQ stream (+ local index) against SQLite per host,
Redis and PostgreSQL, on the same events.

Each store gets the same ``count`` events (3 per job: accepted, started, succeeded) in
batches of 500 — the recorder's batch — and then answers 500 lookups of one job's events
by id. The stream's write is the recorder's confirmed publish; its lookup is the local
index after catching up (the catch-up is timed too: what a new host pays once). Redis
gets one list per job (RPUSH in a pipeline; LRANGE to read); PostgreSQL one table with
an index on the job id (executemany in one transaction per batch; SELECT to read);
SQLite is the index itself, written directly. Ratios: against the stream's write rate.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
import uuid
from pathlib import Path

from bench.harness import Bench, Row, Section
from bench.stats import percentile
from queuewatch.broker.link import BrokerLink
from queuewatch.events import model as ev
from queuewatch.events.model import Event, Source
from queuewatch.events.recorder import EventRecorder
from queuewatch.jobs import Jobs
from queuewatch.jobs.index import JobIndex

KINDS = (ev.ACCEPTED, ev.STARTED, ev.SUCCEEDED)
BATCH = 500
LOOKUPS = 500


def _events(count: int) -> list[Event]:
    source = Source("bench")
    now = int(time.time() * 1000)
    return [Event(kind, f"job-{n:07d}", "bench", 1, source, at_ms=now + i)
            for n in range(count // len(KINDS)) for i, kind in enumerate(KINDS)]


def _pct(samples: list[float], p: float) -> float:
    """``p`` in 0..1, as the other benches' :func:`bench.stats.percentile` (nearest rank)."""
    return percentile(sorted(samples), p * 100)


def _lookups(read, jobs: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(LOOKUPS):
        job = f"job-{random.randrange(jobs):07d}"
        t = time.perf_counter()
        got = read(job)
        times.append((time.perf_counter() - t) * 1000)
        if len(got) != len(KINDS):
            raise RuntimeError(f"{job}: {len(got)} events read back")
    return _pct(times, 0.5), _pct(times, 0.99)


async def _stream(bench: Bench, events: list[Event]) -> tuple[float, float, float, float]:
    async with bench.vhost("stores-stream") as settings:
        link = BrokerLink(settings, name="bench-stores")
        await link.open(30)
        recorder = EventRecorder(link, settings)
        t = time.perf_counter()
        for i in range(0, len(events), BATCH):
            for e in events[i:i + BATCH]:
                recorder.emit(e)
            if recorder.pending >= 20 * BATCH:
                await recorder.flush()
        await recorder.flush()
        write = len(events) / (time.perf_counter() - t)
        await recorder.close()
        await link.close()
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            async with Jobs(settings, index=Path(tmp) / "i.sqlite3") as jobs:
                catch_up = time.perf_counter() - t
                p50, p99 = _lookups(jobs.index.events_of, len(events) // len(KINDS))
    return write, p50, p99, catch_up


def _sqlite(events: list[Event]) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        index = JobIndex(Path(tmp) / "i.sqlite3", max_age=86400, result_ttl=86400)
        t = time.perf_counter()
        for i in range(0, len(events), BATCH):
            index.apply(events[i:i + BATCH], i)
        write = len(events) / (time.perf_counter() - t)
        p50, p99 = _lookups(index.events_of, len(events) // len(KINDS))
        index.close()
    return write, p50, p99


def _redis(events: list[Event]) -> tuple[float, float, float]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    prefix = f"qwbench:{uuid.uuid4().hex[:8]}:"
    try:
        t = time.perf_counter()
        for i in range(0, len(events), BATCH):
            pipe = client.pipeline(transaction=False)
            for e in events[i:i + BATCH]:
                pipe.rpush(prefix + e.job_id, json.dumps(e.to_json(), separators=(",", ":")))
            pipe.execute()
        write = len(events) / (time.perf_counter() - t)
        p50, p99 = _lookups(lambda job: client.lrange(prefix + job, 0, -1), len(events) // len(KINDS))
    finally:
        keys = list(client.scan_iter(prefix + "*", count=10_000))
        for i in range(0, len(keys), 10_000):
            client.delete(*keys[i:i + 10_000])
        client.close()
    return write, p50, p99


def _postgres(events: list[Event]) -> tuple[float, float, float]:
    import psycopg

    table = f"qwbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=/var/run/postgresql dbname=test user=postgres") as conn:
        conn.execute(f"CREATE TABLE {table} (job text, at bigint, body jsonb)")
        conn.execute(f"CREATE INDEX ON {table} (job)")
        conn.commit()
        try:
            t = time.perf_counter()
            with conn.cursor() as cur:
                for i in range(0, len(events), BATCH):
                    cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", [
                        (e.job_id, e.at_ms, json.dumps(e.to_json())) for e in events[i:i + BATCH]])
                    conn.commit()
            write = len(events) / (time.perf_counter() - t)
            p50, p99 = _lookups(lambda job: conn.execute(
                f"SELECT body FROM {table} WHERE job = %s ORDER BY at", (job,)).fetchall(),
                len(events) // len(KINDS))
        finally:
            conn.execute(f"DROP TABLE {table}")
            conn.commit()
    return write, p50, p99


async def run(bench: Bench) -> list[Section]:
    count = bench.size(300_000, 3_000)
    events = _events(count)
    section = Section(
        key="events-stores",
        title=f"Where job events live: {count:,} events written, then 500 lookups by id",
        measures=__doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),  # type: ignore[union-attr]
        columns=["store", "write", "ratio", "lookup p50", "lookup p99", "note"],
    )
    stream = await _stream(bench, events)
    rows: list[tuple[str, tuple[float, float, float], str]] = [
        ("RabbitMQ stream + local index (chosen)", stream[:3],
         f"replicated, any host reads it; a new host's catch-up: {stream[3]:.1f} s"),
    ]
    for name, fn, note in (
        ("SQLite per host", _sqlite, "one host only: others cannot ask; lost with the host"),
        ("Redis (lists per job)", _redis, "an extra datastore; this one keeps nothing on disk"),
        ("PostgreSQL (table + index)", _postgres, "an extra datastore to run and back up"),
    ):
        try:
            rows.append((name, await asyncio.to_thread(fn, events), note))
        except Exception as exc:  # the edge of one store: report it and go on
            section.rows.append(Row(name, {"write": "n/a", "note": f"{type(exc).__name__}: {exc}"[:200]}, None, ""))
    base = stream[0]
    for name, (write, p50, p99), note in rows:
        section.rows.append(Row(name, {
            "write": f"{write:,.0f} events/s", "ratio": f"{write / base:.2f}×",
            "lookup p50": f"{p50:.2f} ms", "lookup p99": f"{p99:.2f} ms", "note": note}, None, ""))
    return [section]
