"""The status line (broker, version, alarms, connection state, last refresh) and the alerts strip."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widgets import Static

from queuewatch.monitor.model import Alert, Snapshot, fmt_duration


class StatusBar(Static):
    """One line: where we are connected, how fresh the data is, what is wrong."""

    def __init__(self, display_url: str, vhost: str, clock: Callable[[], float], **kw: object) -> None:
        super().__init__("", **kw)  # type: ignore[arg-type]
        self.display_url = display_url
        self.vhost = vhost
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.error: str | None = None
        self.retry_at: float | None = None
        self.read_only = False
        self.polling = False

    def show(self) -> None:
        self.update(self.render_text())

    def render_text(self) -> Text:
        now = self.clock()
        t = Text()
        t.append(" queuewatch ", style="bold reverse")
        snap = self.snapshot
        t.append(f" {self.display_url}", style="bold")
        if snap and snap.broker.version:
            t.append(f"  RabbitMQ {snap.broker.version}")
        t.append(f"  vhost {self.vhost}", style="cyan")
        if self.read_only:
            t.append("  READ-ONLY", style="bold magenta")
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
        if self.error is not None:
            t.append("  ● disconnected", style="bold red")
            if self.retry_at is not None:
                t.append(f" (retry in {max(0, round(self.retry_at - now))}s)", style="red")
        elif snap is None:
            t.append("  ● connecting…", style="yellow")
        else:
            t.append("  ● connected", style="green")
        if snap is not None:
            t.append(f"  updated {fmt_duration(now - snap.taken_at)} ago", style="dim")
        return t


class ErrorLine(Static):
    """The last poll error, shown while the broker is unreachable."""


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
