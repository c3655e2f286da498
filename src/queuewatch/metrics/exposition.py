"""The exporter's answer to a scrape: each snapshot rendered once, served as bytes.

At 20,000 queues a snapshot is about 100,000 samples, 11 MB of text: rendering it with
prometheus_client took 1.4-2.8 s per scrape (BENCHMARKS.md, issue 16). So the background
poll renders each new snapshot once, in a thread, before scrapes see it
(:meth:`Exposition.prepare`): the text exposition (format 0.0.4) and its gzip form, kept
open (a ``zlib`` compressor after a sync flush). A scrape then renders only the few
scrape-time families (:meth:`QueuewatchCollector.scrape_families
<queuewatch.metrics.collector.QueuewatchCollector.scrape_families>`: up, the error counter,
the scrape's duration, ``queuewatch_snapshot_age_seconds`` computed *at the scrape*, the
poll interval) and appends them: to the text, or through a copy of the kept compressor, so
the gzip answer is one valid gzip member without compressing the snapshot again.

Every scrape is answered in the Prometheus text format 0.0.4 (Prometheus asks for
OpenMetrics first and accepts this); a request with ``name[]`` parameters is answered by
prometheus_client from the registry, uncached.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString as _untyped_float

from queuewatch.metrics.collector import QueuewatchCollector
from queuewatch.monitor.model import Snapshot

#: gzip level for the cached body: level 1 is ~5x faster than the default 9 and, on the
#: repetitive exposition text, only a little larger.
GZIP_LEVEL = 1

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
#: prometheus_client's float formatting (Go's, as Prometheus parses it).
floatToGoString = cast(Callable[[float], str], _untyped_float)


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render_text(families: Iterable[Metric]) -> bytes:
    """``families`` in the Prometheus text format 0.0.4, byte for byte what
    ``prometheus_client.generate_latest`` writes for gauges and counters without timestamps
    (the only kinds queuewatch exports), about 2x faster: a label set seen before (a queue's
    ``vhost``/``queue`` pair appears in a dozen families) is written once and reused."""
    out: list[str] = []
    labelsets: dict[tuple[tuple[str, str], ...], str] = {}
    for m in families:
        if m.type not in ("gauge", "counter"):
            raise ValueError(f"render_text: {m.name} is a {m.type}; only gauges and counters")
        name = m.name + "_total" if m.type == "counter" else m.name
        doc = m.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {m.type}\n")
        for s in m.samples:
            if s.timestamp is not None:
                raise ValueError(f"render_text: {s.name} has a timestamp")
            labels = s.labels
            if labels:
                key = tuple(labels.items())
                text = labelsets.get(key)
                if text is None:
                    text = labelsets[key] = "{" + ",".join(
                        f'{k}="{_escape_label(v)}"' for k, v in sorted(key)) + "}"
                out.append(f"{s.name}{text} {floatToGoString(s.value)}\n")
            else:
                out.append(f"{s.name} {floatToGoString(s.value)}\n")
    return "".join(out).encode("utf-8")


@dataclass(frozen=True)
class Rendered:
    """One snapshot's families, rendered."""

    snapshot: Snapshot | None
    text: bytes
    """The families in the text format."""
    gzip_head: bytes
    """``text`` gzipped, without the end of the gzip stream (see :meth:`gzip_with`)."""
    _compressor: Any
    """The ``zlib`` compressor that wrote ``gzip_head``, after a sync flush."""

    @classmethod
    def of(cls, snapshot: Snapshot | None, text: bytes) -> Rendered:
        c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        head = c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH)
        return cls(snapshot, text, head, c)

    def gzip_with(self, tail: bytes) -> list[bytes]:
        """One gzip stream of ``text + tail`` (chunks to send), compressing only ``tail``."""
        c = self._compressor.copy()
        return [self.gzip_head, c.compress(tail) + c.flush()]


class Exposition:
    """Serves ``collector``'s families, each snapshot rendered once (see the module docstring).

    ``renders`` counts renders of a snapshot's families; scrapes do not add to it unless
    they meet a snapshot the background poll has not prepared (then the first renders it,
    once, under a lock)."""

    def __init__(self, collector: QueuewatchCollector, registry: CollectorRegistry) -> None:
        self.collector = collector
        self.registry = registry
        self.renders = 0
        self._lock = threading.Lock()
        self._empty = Rendered.of(None, b"")
        self._current: Rendered = self._empty
        self._uncached = make_wsgi_app(registry)

    def prepare(self, snap: Snapshot) -> None:
        """Render ``snap`` now (the background poll calls this in a thread, before scrapes
        can see the snapshot)."""
        self._rendered(snap)

    def _rendered(self, snap: Snapshot | None) -> Rendered:
        if snap is None:
            return self._empty
        current = self._current
        if current.snapshot is snap:
            return current
        with self._lock:
            if self._current.snapshot is not snap:
                self._current = Rendered.of(snap, render_text(self.collector.families(snap)))
                self.renders += 1
            return self._current

    def scrape(self, gzip: bool) -> list[bytes]:
        """One scrape's body (chunks): the snapshot's rendered families and the scrape-time
        families, gzipped when ``gzip``."""
        started = time.perf_counter()
        snap = self.collector.take()
        body = self._rendered(snap)
        tail = render_text(self.collector.scrape_families(snap, started))
        return body.gzip_with(tail) if gzip else [body.text, tail]

    def wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI app: what prometheus_client's ``make_wsgi_app`` answers, from the cache."""
        method = environ["REQUEST_METHOD"]
        if "name[]" in parse_qs(environ.get("QUERY_STRING", "")) or method != "GET" or \
                environ.get("PATH_INFO") == "/favicon.ico":
            return self._uncached(environ, start_response)  # type: ignore[no-any-return]
        gzip = _gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
        chunks = self.scrape(gzip)
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4),
                   ("Content-Length", str(sum(len(c) for c in chunks)))]
        if gzip:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return chunks


def _gzip_accepted(header: str) -> bool:
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0")
    return False
