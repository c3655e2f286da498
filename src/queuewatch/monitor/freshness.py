"""How fresh the monitor's knowledge is: the heartbeat feed's state, and the judgement of a
worker's silence against it.

A worker's silence only means something while *we* could hear it. So a worker's
heartbeat is judged against the time our heartbeat feed has been live, not just the time
of its last beat:

- **fresh**: a beat arrived within ``stale_after`` seconds, after our feed was proven live
  (since ``feed.since``). A beat delivered before that proof may have been held back by a
  silent link and flushed when it carried traffic again (a worker killed during the silence
  would look fresh for ``stale_after`` seconds, its jobs stuck): it is old news, like a beat
  heard before an outage;
- **unknown**: our feed is down now, or it came back less than ``stale_after`` seconds ago
  and this worker has not been heard since (its beats may simply not have reached us);
- **stale**: silent for more than ``stale_after`` seconds *of live feed*, i.e.
  ``checked - max(last beat, feed live since) > stale_after`` while the feed is live, where
  ``checked`` is the last time our own probe came back through the broker (the feed was
  proven to work up to then).

Only a stale worker can be HUNG (and only when the broker still lists its connection).
Stuck jobs come from fresh beats only: the in-flight list of an unknown or stale worker is
old news (the jobs may have finished since), so it is never reported as stuck; a stale
worker that still holds them is reported as hung or gone instead. A stuck job's age is how
long it had run at the latest beat that listed it, never extrapolated past that beat, and
measured on the worker's own clock (``sent_at - started_at``): a beat delivered late (held
by a silent link, then flushed) carries its old in-flight list, which must not look older.
"""

from __future__ import annotations

from dataclasses import replace

from queuewatch.monitor.model import Alert, BeatState, FeedStatus, fmt_duration
from queuewatch.telemetry import InFlightJob

ALWAYS_LIVE = FeedStatus(True, 0.0)
"""For heartbeat sources that cannot fail (filled by hand): judge by the beats alone."""


def judge_beat(received_at: float, now: float, stale_after: float,
               feed: FeedStatus = ALWAYS_LIVE) -> BeatState:
    """The state of a worker last heard at ``received_at`` (see the module doc). Silence
    counts only up to the last proof that the feed worked, so a feed that died a moment
    ago, before anyone noticed, cannot make a worker stale."""
    if not feed.live:
        return "unknown"
    if now - received_at <= stale_after and received_at >= feed.since:
        return "fresh"
    proven = now if feed.checked_at is None else min(feed.checked_at, now)
    silent_while_live = proven - max(received_at, feed.since)
    return "stale" if silent_while_live > stale_after else "unknown"


def jobs_on_monitor_clock(jobs: tuple[InFlightJob, ...], sent_at: float,
                          received_at: float) -> tuple[InFlightJob, ...]:
    """A beat's in-flight jobs with ``started_at`` moved to the monitor's clock by the beat's
    own send and receive times, so ``received_at - started_at`` is how long each had run
    when the beat was sent (immune to clock skew and to a late delivery)."""
    shift = received_at - sent_at
    return tuple(replace(j, started_at=j.started_at + shift) for j in jobs) if shift else jobs


def feed_alert(feed: FeedStatus | None, now: float) -> Alert | None:
    """A warning while the heartbeat feed is down (worker states are then unknown)."""
    if feed is None or feed.live:
        return None
    down = max(now - feed.since, 0.0)
    why = f" ({feed.reason})" if feed.reason else ""
    return Alert(
        "warning", "heartbeats_lost", "heartbeats",
        f"no worker heartbeats reached queuewatch for {fmt_duration(down)}{why}; worker "
        "states are unknown until they are back (reconnecting)", down)
