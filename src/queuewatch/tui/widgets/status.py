"""The status line (broker, version, alarms, connection state, last refresh) and the alerts strip."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widgets import Static

from queuewatch.monitor.model import Alert, Snapshot, fmt_duration
from queuewatch.monitor.pacing import Pace

#: What the header says instead of "disconnected" when retrying will not help by itself.
REFUSALS = {"AuthenticationFailed": "login refused (user/password)",
            "NotAuthorised": "not authorised (user tags/permissions)",
            "NotFound": "vhost not found"}


#: A poll still running this long after it was due, beyond twice the last poll's duration,
#: is overdue: the management API takes a request and does not answer (a silent network, a
#: hung node), so the console says the data is stale instead of "connected" (seconds).
OVERDUE_GRACE = 3.0


class StatusBar(Static):
    """One line: where we are connected, how fresh the data is, what is wrong."""

    def __init__(self, display_url: str, vhost: str, clock: Callable[[], float], **kw: object) -> None:
        super().__init__("", markup=False, **kw)  # type: ignore[arg-type]
        self.display_url = display_url
        self.vhost = vhost
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.error: str | None = None
        self.retry_at: float | None = None
        self.read_only = False
        self.polling = False
        self.error_kind: str | None = None
        """The error's class name: a refusal (credentials, vhost) is said as what it is."""
        self.pace: Pace | None = None
        """The pause before the next poll; said while stretched (polls slower than the
        interval)."""

    def show(self) -> None:
        text = self.render_text()
        text.no_wrap = True
        text.overflow = "ellipsis"
        self.update(text)

    def render_text(self) -> Text:
        """Most important first, so a narrow terminal (80 columns) still shows whether the
        data is current: the link state and staleness, alarms, then where we are."""
        now = self.clock()
        t = Text()
        t.append(" queuewatch ", style="bold reverse")
        snap = self.snapshot
        self._link_state(t, now)
        stretched = self.pace.text() if self.pace is not None and self.error is None else None
        if stretched:
            t.append(f"  {stretched}", style="bold yellow")
        if snap:
            alarms = [
                f"{n.name}:{'mem' if n.mem_alarm else ''}{'disk' if n.disk_alarm else ''}"
                for n in snap.nodes if n.mem_alarm or n.disk_alarm
            ]
            down = [n.name for n in snap.nodes if not n.running]
            if alarms:
                t.append("  ALARM " + " ".join(alarms), style="bold white on red")
            if down:
                t.append("  NODE DOWN " + " ".join(down), style="bold white on red")
            if snap.nodes_hidden:
                t.append("  alarms unknown (no 'monitoring' tag)", style="yellow")
        if self.read_only:
            t.append("  READ-ONLY", style="bold magenta")
        t.append(f"  vhost {self.vhost}", style="cyan")
        t.append(f"  {self.display_url}", style="bold")
        if snap and snap.broker.version:
            t.append(f"  RabbitMQ {snap.broker.version}")
        if snap is not None and self.error is None:
            t.append(f"  updated {fmt_duration(now - snap.taken_at)} ago", style="dim")
        return t

    def _link_state(self, t: Text, now: float) -> None:
        snap = self.snapshot
        if self.error is not None:
            refused = REFUSALS.get(self.error_kind or "")
            t.append(f" ● {refused or 'disconnected'}", style="bold red")
            if self.retry_at is not None:
                again = "checking again" if refused else "retry"
                t.append(f" ({again} in {max(0, round(self.retry_at - now))}s)", style="red")
            if snap is not None:
                t.append(f"  {stale_text(snap.age(now))}", style="bold yellow")
        elif snap is None:
            t.append(" ● connecting…", style="yellow")
        else:
            late = self.overdue(now)
            if late is None:
                t.append(" ● connected", style="green")
            else:
                t.append(" ● no answer", style="bold red")
                t.append(f"  stale {fmt_duration(late)} — waiting for the management API",
                         style="bold yellow")
            lost = heartbeats_lost(snap, now)
            if lost is not None:
                t.append(f"  heartbeats {stale_text(lost)}", style="bold yellow")


    def overdue(self, now: float) -> float | None:
        """The age of the data on screen while a poll is overdue (see :data:`OVERDUE_GRACE`),
        else None. Polls that fail are said by the error; this is for one that hangs until
        the HTTP timeout (10 s by default) while the data ages."""
        snap, paced = self.snapshot, self.pace
        if not self.polling or self.error is not None or snap is None or paced is None:
            return None
        age = snap.age(now)
        allowed = paced.pause + 2 * (paced.poll_seconds or 0.0) + OVERDUE_GRACE
        return age if age > allowed else None


def stale_text(seconds: float) -> str:
    """How the console says that what it shows is old: ``stale 12s — reconnecting``."""
    return f"stale {fmt_duration(seconds)} — reconnecting"


def with_poll_age(summary: str, age: float | None) -> str:
    """A view's help line, prefixed with the data's age while polls fail."""
    return summary if age is None else f" {stale_text(age)}: as of the last poll ·{summary}"


def heartbeats_lost(snap: Snapshot, now: float) -> float | None:
    """Seconds since worker heartbeats last reached us, while the feed is down (else None)."""
    feed = snap.heartbeats
    if feed is None or feed.live:
        return None
    return max(now - feed.since, 0.0)


class ErrorLine(Static):
    """The last poll error, and how old the data on screen is, while polls fail."""

    def show_error(self, error: str | None, snap: Snapshot | None, now: float) -> None:
        self.set_class(error is not None, "visible")
        if error is None:
            self.update("")
            return
        age = "" if snap is None else f"{stale_text(snap.age(now))} · "
        self.update(f" ✖ {age}{error}")


class AlertsStrip(Static):
    """A short list of the worst active alerts."""

    MAX_SHOWN = 3

    def show_alerts(self, alerts: tuple[Alert, ...]) -> None:
        if not alerts:
            self.update(Text(" no active alerts", style="green"))
            self.remove_class("alerting")
            return
        self.add_class("alerting")
        ordered = sorted(alerts, key=lambda a: (a.severity != "critical", a.kind, a.target))
        t = Text()
        crit = sum(1 for a in alerts if a.severity == "critical")
        t.append(f" {len(alerts)} alerts ({crit} critical)", style="bold")
        for a in ordered[: self.MAX_SHOWN]:
            style = "bold red" if a.severity == "critical" else "yellow"
            t.append("  ▲ ", style=style)
            t.append(f"{a.target}: {a.reason}", style=style)
        if len(alerts) > self.MAX_SHOWN:
            t.append(f"  … +{len(alerts) - self.MAX_SHOWN} (press 5)", style="dim")
        self.update(t)
