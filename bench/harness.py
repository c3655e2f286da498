"""The shared harness: configuration, a fresh vhost per measurement, repeated runs, results.

A benchmark family is an ``async def run(bench: Bench) -> list[Section]``. It measures each
contender ``bench.runs`` times, each run in its own fresh vhost (created and deleted through
the management API), and reports rows whose ratio is taken against a baseline measured in
the same run of the harness.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from bench.stats import Stat, fmt_ratio, ratio, stat
from queuewatch.broker.management import ManagementClient
from queuewatch.config import Settings, load_settings

VHOST_PREFIX = "qwb-"


class NotAvailable(Exception):
    """A contender cannot be measured here (its component is missing or failed to import)."""


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    runs: int = 3
    only: tuple[str, ...] = ()
    out: str | None = "BENCHMARKS.md"
    concurrency: int = 10
    """Worker concurrency (tasks/threads) given to every worker under test."""
    prefetch: int | None = None
    """Prefetch used by every consumer in the head-to-head worker benchmarks (default: the
    queuewatch worker's own default for ``concurrency``)."""
    render: str | None = None
    """Re-render the report from this saved run instead of measuring."""
    merge: bool = False
    """Replace the re-run families' tables in the last saved run."""


@dataclass
class Row:
    """One contender's result: a label, formatted cells, and (for the summary) a verdict."""

    label: str
    cells: dict[str, str] = field(default_factory=dict)
    value: Stat | None = None
    note: str = ""


@dataclass
class Target:
    """A goal from the issues, with where we stand."""

    what: str
    goal: str
    measured: str
    verdict: str
    """``pass``, ``MISS`` or ``n/a``."""
    why: str = ""


@dataclass
class Section:
    """One table of the report."""

    key: str
    title: str
    measures: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


@dataclass
class Bench:
    """What every benchmark gets: settings, a management client, the config, shared facts."""

    settings: Settings
    mgmt: ManagementClient
    config: BenchConfig
    facts: dict[str, float] = field(default_factory=dict)
    """Measurements later benchmarks reuse (e.g. the max worker throughput for latency)."""
    vhosts_made: int = 0
    vhosts_deleted: int = 0

    @property
    def runs(self) -> int:
        return self.config.runs

    @property
    def quick(self) -> bool:
        return self.config.quick

    @property
    def prefetch(self) -> int:
        if self.config.prefetch:
            return self.config.prefetch
        return default_prefetch(self.config.concurrency)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    @contextlib.asynccontextmanager
    async def vhost(self, label: str) -> AsyncIterator[Settings]:
        """A fresh vhost for one measurement; yields settings bound to it, deletes it after."""
        name = f"{VHOST_PREFIX}{label}-{uuid.uuid4().hex[:8]}"
        await self.mgmt.create_vhost(name)
        await self.mgmt.set_permissions(name, self.settings.credentials[0])
        self.vhosts_made += 1
        try:
            yield replace(self.settings, vhost=name)
        finally:
            try:
                await self.mgmt.delete_vhost(name)
                self.vhosts_deleted += 1
            except Exception as exc:  # report, never mask the benchmark's own outcome
                print(f"bench: could not delete vhost {name}: {exc}", file=sys.stderr)

    async def repeat(
        self, label: str, unit: str, measure: Callable[[Settings], Awaitable[float]],
        runs: int | None = None,
    ) -> Stat:
        """Run ``measure`` in a fresh vhost ``runs`` times; collect what it returns."""
        samples: list[float] = []
        for _ in range(runs or self.runs):
            async with self.vhost(label) as settings:
                samples.append(await measure(settings))
        return stat(samples, unit)


def default_prefetch(concurrency: int) -> int:
    """The queuewatch worker's default prefetch for ``concurrency`` (2× when unavailable)."""
    try:
        from queuewatch.topology import Topology
        from queuewatch.worker import Worker

        worker = Worker(make_settings(), Topology(), concurrency=concurrency,
                        idempotency=False, metrics=False)
        return int(worker.prefetch)
    except Exception:  # the worker is not there (yet): the documented default
        return concurrency * 2


def make_settings() -> Settings:
    """Settings from ``QUEUEWATCH_*`` environment variables only (like the test suite)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("QUEUEWATCH_")}
    return load_settings(env=env, vhost="/")


@contextlib.asynccontextmanager
async def session(runs: int = 1) -> AsyncIterator[tuple[Settings, ManagementClient, Bench]]:
    """Settings, a management client (closed after) and a :class:`Bench` of ``runs`` runs,
    for a benchmark script of its own (``bench.replay_share``, ``bench.dlq_delete``, ...)."""
    settings = make_settings()
    mgmt = ManagementClient(settings)
    try:
        yield settings, mgmt, Bench(settings, mgmt, BenchConfig(runs=runs))
    finally:
        await mgmt.aclose()


def rate_row(label: str, value: Stat | None, baseline: Stat | None, *, note: str = "",
             na: str | None = None) -> Row:
    """A throughput row: median (min–max) and the ratio to ``baseline``."""
    if value is None:
        return Row(label, {"result": "n/a", "ratio": "n/a"}, None, na or note)
    return Row(label, {"result": value.fmt(), "ratio": fmt_ratio(ratio(value, baseline))},
               value, note)


async def measure_or_na(
    bench: Bench, label: str, unit: str, measure: Callable[[Settings], Awaitable[float]],
    runs: int | None = None,
) -> tuple[Stat | None, str]:
    """``bench.repeat`` that turns a missing component into ``(None, reason)``."""
    try:
        return await bench.repeat(label, unit, measure, runs), ""
    except NotAvailable as exc:
        return None, f"not available: {exc}"
    except Exception as exc:  # the edge of one benchmark: report and keep going
        return None, one_line(f"failed: {type(exc).__name__}: {exc}")


def one_line(text: str, limit: int = 240) -> str:
    """A table cell: no newlines, at most ``limit`` characters."""
    flat = " / ".join(part.strip() for part in text.splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


Measure = Callable[[Settings], Awaitable[float]]


async def compare(
    bench: Bench, contenders: Sequence[tuple[str, Measure]], unit: str, runs: int | None = None,
) -> dict[str, tuple[Stat | None, str]]:
    """Measure every contender ``runs`` times, **interleaved** (run 1 of each, then run 2 of
    each, ...), each run in a fresh vhost, so drifting load on a shared machine hits all of
    them alike. A contender that is not available or fails is dropped with the reason."""
    samples: dict[str, list[float]] = {key: [] for key, _ in contenders}
    why: dict[str, str] = {key: "" for key, _ in contenders}
    for _ in range(runs or bench.runs):
        for key, measure in contenders:
            if why[key]:
                continue
            try:
                async with bench.vhost(key) as settings:
                    samples[key].append(await measure(settings))
            except NotAvailable as exc:
                why[key] = f"not available: {exc}"
            except Exception as exc:  # the edge of one measurement: report, keep going
                why[key] = one_line(f"failed: {type(exc).__name__}: {exc}")
    return {key: (None if why[key] or not samples[key] else stat(samples[key], unit), why[key])
            for key, _ in contenders}


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "MISS")


class Clock:
    """``with Clock() as c: ...; c.elapsed``"""

    def __enter__(self) -> Clock:
        self.start = time.perf_counter()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start
