"""Which lines of an export file an import already put into a queue, so a re-run adds none
of them again.

An import that goes on past a line it cannot publish (reported, kept out) must not
duplicate the rest when it is run again to retry that line. The import keeps, per (vhost,
queue, file content), the numbers of the lines RabbitMQ confirmed, in
``<state_dir>/imports/<key>.json`` (0600): a re-run of the same file into the same queue
skips them. Another file, a changed file, or another queue starts afresh; so does
``again=True`` (``dlq import --again``), for an import meant to add the messages once more.

The record is written every :data:`SAVE_EVERY` confirms and when the import ends (also
when it stops early); a process killed between two saves forgets at most that many, which
a re-run then adds again (duplicates, never losses).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SAVE_EVERY = 5000
log = logging.getLogger(__name__)


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_ranges(numbers: Iterable[int]) -> list[list[int]]:
    """Sorted numbers as ``[[first, last], ...]`` runs."""
    out: list[list[int]] = []
    for n in sorted(numbers):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        elif not out or n > out[-1][1]:
            out.append([n, n])
    return out


def from_ranges(ranges: Any) -> set[int]:
    done: set[int] = set()
    if not isinstance(ranges, list):
        return done
    for pair in ranges:
        if (isinstance(pair, list) and len(pair) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
            done.update(range(pair[0], pair[1] + 1))
    return done


class ImportLog:
    """The confirmed lines of one file in one queue (see the module doc)."""

    def __init__(self, record: Path | None, meta: dict[str, Any], done: set[int]) -> None:
        self.record = record
        """Where it is kept (None: not kept, e.g. ``again=True`` without a state dir)."""
        self.meta = meta
        self.done = done
        self.earlier = len(done)
        """Lines an earlier import confirmed."""
        self._unsaved = 0

    @classmethod
    def open(cls, state_dir: Path, vhost: str, queue: str, path: Path,
             again: bool = False) -> ImportLog:
        digest = file_digest(path)
        key = hashlib.sha256(f"{vhost}\0{queue}\0{digest}".encode()).hexdigest()[:32]
        record = state_dir / "imports" / f"{key}.json"
        meta = {"file": str(path), "sha256": digest, "vhost": vhost, "queue": queue}
        done: set[int] = set()
        if not again:
            try:
                data = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            if isinstance(data, dict) and data.get("sha256") == digest:
                done = from_ranges(data.get("done"))
        return cls(record, meta, done)

    def __contains__(self, line: int) -> bool:
        return line in self.done

    def add(self, line: int) -> None:
        self.done.add(line)
        self._unsaved += 1
        if self._unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write the record (atomically, 0600). An unwritable state dir is not an error of
        the import: the next run may then add these lines again."""
        self._unsaved = 0
        if self.record is None:
            return
        try:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.record.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({**self.meta, "done": to_ranges(self.done)}, fh)
            os.replace(tmp, self.record)
        except OSError as exc:
            log.warning("cannot record the import's progress in %s (%s): a re-run may add "
                        "these messages again", self.record, exc.strerror)
