"""The console's chart history, kept across restarts: one small file per broker and vhost
under the state directory (``<state_dir>/history/<host>-<port>-<vhost>-<hash>.json.gz``).

Bounded: at most :data:`MAX_QUEUES` queues (the busiest at the last poll), each at most the
history size, points older than :data:`MAX_AGE` dropped; columns stored as arrays of small
numbers, gzipped (about 7 bytes a point: 200 queues of 120 points take about 170 KB). Written whole to a temporary file then renamed, so a crash never leaves half a file;
a file that cannot be read is ignored (the charts start empty), never an error.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from queuewatch.monitor.history import TOTALS, HistoryPoint, QueueHistory
from queuewatch.monitor.model import QueueStats

log = logging.getLogger(__name__)

#: Queues kept in the file (the busiest by depth and rates at the last poll).
MAX_QUEUES = 200
#: Points older than this (seconds) are not kept.
MAX_AGE = 24 * 3600.0
VERSION = 1

Key = tuple[str, str]


def history_path(state_dir: Path, broker_url: str, vhost: str) -> Path:
    """The file for this broker and vhost (no user or password in its name)."""
    parts = urlsplit(broker_url)
    host = f"{parts.hostname or 'broker'}-{parts.port or ''}".rstrip("-")
    digest = hashlib.sha256(f"{host}\0{vhost}".encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{host}-{vhost}").strip("_")[:60]
    return state_dir / "history" / f"{slug}-{digest}.json.gz"


def _busiest(history: Mapping[Key, Sequence[HistoryPoint]], n: int) -> list[Key]:
    def weight(key: Key) -> float:
        points = history[key]
        if not points:
            return -1.0
        last = points[-1]
        return last.total + last.publish_rate + last.ack_rate
    return sorted(history, key=weight, reverse=True)[:n]


def encode(history: Mapping[Key, Sequence[HistoryPoint]], now: float,
           max_queues: int = MAX_QUEUES, max_age: float = MAX_AGE) -> dict[str, object]:
    """The file's content: per queue, times (seconds after ``t0``) and one array per field."""
    queues = []
    for vhost, name in _busiest(history, max_queues):
        points = [p for p in history[(vhost, name)] if now - p.taken_at <= max_age]
        if not points:
            continue
        t0 = points[0].taken_at
        queues.append({
            "vhost": vhost, "name": name, "t0": round(t0, 3),
            "dt": [round(p.taken_at - t0, 1) for p in points],
            "ready": [p.ready for p in points], "unacked": [p.unacked for p in points],
            "consumers": [p.consumers for p in points],
            "in": [round(p.publish_rate, 1) for p in points],
            "ack": [round(p.ack_rate, 1) for p in points],
            "oldest": [None if p.oldest_age is None else round(p.oldest_age) for p in points],
        })
    return {"version": VERSION, "saved_at": now, "queues": queues}


def save(path: Path, history: Mapping[Key, Sequence[HistoryPoint]], now: float,
         max_queues: int = MAX_QUEUES) -> int:
    """Write the file (blocking: call it off the UI's event loop); returns its size."""
    data = gzip.compress(json.dumps(encode(history, now, max_queues),
                                    separators=(",", ":")).encode(), mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


def decode(data: Mapping[str, object], now: float,
           max_age: float = MAX_AGE) -> dict[Key, list[HistoryPoint]]:
    out: dict[Key, list[HistoryPoint]] = {}
    queues = data.get("queues") if data.get("version") == VERSION else None
    for q in queues if isinstance(queues, list) else ():
        t0 = float(q["t0"])
        columns: Iterable[tuple[float, int, int, int, float, float, float | None]] = zip(
            q["dt"], q["ready"], q["unacked"], q["consumers"], q["in"], q["ack"], q["oldest"],
            strict=True)
        points = [HistoryPoint(t0 + dt, int(r), int(u), int(c), float(i), float(a),
                               None if o is None else float(o))
                  for dt, r, u, c, i, a, o in columns]
        out[(str(q["vhost"]), str(q["name"]))] = [p for p in points
                                                  if 0 <= now - p.taken_at <= max_age]
    return out


def load(path: Path, now: float) -> dict[Key, list[HistoryPoint]]:
    """What an earlier run kept (empty when there is no file or it cannot be read)."""
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
        return decode(data, now) if isinstance(data, dict) else {}
    except (OSError, EOFError, ValueError, KeyError, TypeError):
        return {}


#: How often the console writes its history file (seconds), besides when it closes.
SAVE_EVERY = 30.0


class KeptHistory:
    """The history of earlier runs for one broker and vhost, drawn before this run's.

    ``points()`` is what a chart draws: the kept points older than this run's first, then this
    run's, the newest ``size`` in all. ``save_due()`` after each poll writes the file every
    :data:`SAVE_EVERY` seconds, in a thread (the caller's event loop never waits on the disk)."""

    def __init__(self, path: Path, size: int, clock: Callable[[], float],
                 save_every: float = SAVE_EVERY, max_queues: int = MAX_QUEUES) -> None:
        self.path = path
        self.size = size
        self.clock = clock
        self.save_every = save_every
        self.max_queues = max_queues
        self.older: dict[Key, list[HistoryPoint]] = {}
        self.saved_at: float | None = None
        self._last: Sequence[QueueStats] = ()

    async def load(self) -> None:
        self.older = await asyncio.to_thread(load, self.path, self.clock())
        self.saved_at = self.clock()

    def points(self, key: Key, live: Sequence[HistoryPoint]) -> tuple[HistoryPoint, ...]:
        older = self.older.get(key)
        if not older:
            return tuple(live)
        first = live[0].taken_at if live else float("inf")
        return tuple([p for p in older if p.taken_at < first] + list(live))[-self.size:]

    async def save_due(self, history: QueueHistory, queues: Sequence[QueueStats]) -> None:
        self._last = queues
        if self.saved_at is None or self.clock() - self.saved_at >= self.save_every:
            await self.save(history)

    async def save(self, history: QueueHistory) -> None:
        """Write the busiest queues' points now (the list is built here, the file in a thread)."""
        self.saved_at = now = self.clock()
        busiest = sorted(self._last, key=lambda q: (q.ready or 0) + (q.unacked or 0)
                         + q.publish_rate + q.ack_rate, reverse=True)[:self.max_queues]
        data = {q.key: self.points(q.key, history.get(q.name, q.vhost)) for q in busiest}
        for vhost in {q.vhost for q in busiest}:  # and the vhost's totals (the overview chart)
            data[(vhost, TOTALS)] = self.points((vhost, TOTALS), history.vhost_totals(vhost))
        try:
            await asyncio.to_thread(save, self.path, data, now, len(data))
        except OSError as exc:  # a full or read-only disk costs the charts, not the console
            log.warning("chart history not saved to %s: %s", self.path, exc)
