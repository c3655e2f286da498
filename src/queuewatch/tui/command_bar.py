"""The ``:`` command bar's commands (the k9s habit): one list, read by the bar, its
completion, the help screen and the docs. A new view adds one :class:`Command` here (with
``view=`` its id: it is offered only once the view exists on the main screen).

Each command runs an action of the app (``view('queues')``, ``drill('queue', 'orders')``,
``quit``): the same actions as the keys.
A command is typed in full or by any prefix that names one command only (``:wo`` is
``:workers``); ``:queue NAME`` takes an argument, ``:dlq [NAME]`` may.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    action: str
    """The action without an argument (``view('dlq')``), or with ``{arg}`` where the
    argument goes (``drill('queue', {arg})``: it is filled in quoted)."""
    arg: str | None = None
    """The argument's name (``NAME``, ``ID``); None: the command takes none."""
    arg_action: str | None = None
    """When the argument is optional: the action with it (``action`` runs without it)."""
    view: str | None = None
    """The view the command shows: offered only while the main screen has it."""
    completes: str | None = None
    """What the argument completes from: ``queues`` or ``dlqs`` of the latest poll."""

    @property
    def usage(self) -> str:
        if self.arg is None:
            return f":{self.name}"
        return f":{self.name} [{self.arg}]" if self.arg_action else f":{self.name} {self.arg}"


COMMANDS: list[Command] = [
    Command("queues", "the Queues view", "view('queues')", view="queues"),
    Command("queue", "a queue's detail", "drill('queue', {arg})", arg="NAME", completes="queues"),
    Command("workers", "the Workers view", "view('workers')", view="workers"),
    Command("stuck", "the Stuck jobs view", "view('stuck')", view="stuck"),
    Command("dlq", "the DLQ browser (on the DLQ NAME)", "view('dlq')", arg="NAME",
            arg_action="drill('dlq', {arg})", view="dlq", completes="dlqs"),
    Command("alerts", "the Alerts view", "view('alerts')", view="alerts"),
    Command("busy", "the Busy view: jobs running now", "view('busy')", view="busy"),
    Command("scheduled", "the Scheduled/Retries view", "view('scheduled')", view="scheduled"),
    Command("schedules", "the Schedules view (periodic jobs)", "view('schedules')",
            view="schedules"),
    Command("job", "a job's timeline by id", "drill('job', {arg})", arg="ID"),
    Command("vhost", "switch to the vhost NAME (without NAME: pick one)", "pick_vhost",
            arg="NAME", arg_action="check_vhost({arg})"),
    Command("help", "every key binding", "help"),
    Command("quit", "leave the console", "quit"),
]


class CommandError(Exception):
    """What is wrong with a typed command, in one line."""


def offered(views: Iterable[str], commands: Sequence[Command] = COMMANDS) -> list[Command]:
    """The commands that work now: those of views the main screen has, and the others."""
    have = set(views)
    return [c for c in commands if c.view is None or c.view in have]


def resolve(text: str, commands: Sequence[Command]) -> tuple[Command, str | None]:
    """``"wo"`` -> (workers, None); ``"queue orders"`` -> (queue, "orders")."""
    words = text.strip().lstrip(":").split(maxsplit=1)
    if not words:
        raise CommandError("type a command: " + ", ".join(c.usage for c in commands))
    name, arg = words[0].lower(), (words[1].strip() if len(words) > 1 else None)
    exact = [c for c in commands if c.name == name]
    matches = exact or [c for c in commands if c.name.startswith(name)]
    if not matches:
        raise CommandError(f"unknown command :{name} (: lists the commands, ? has them all)")
    if len(matches) > 1:
        raise CommandError(f":{name} is ambiguous: " + ", ".join(f":{c.name}" for c in matches))
    command = matches[0]
    if arg and command.arg is None:
        raise CommandError(f":{command.name} takes no argument")
    if not arg and command.arg is not None and command.arg_action is None:
        raise CommandError(f":{command.name} needs {command.arg} ({command.usage})")
    return command, arg


def action_of(command: Command, arg: str | None) -> str:
    """The action string to run for ``command`` (with ``arg`` quoted in place)."""
    if arg is None:
        return command.action
    template = command.arg_action or command.action
    return template.replace("{arg}", repr(arg))


def completions(commands: Sequence[Command], names: dict[str, Sequence[str]]) -> list[str]:
    """What the bar completes: every command, and ``queue NAME`` / ``dlq NAME`` for the
    names of the latest poll (``names``: ``queues``/``dlqs`` -> names)."""
    out = [c.name for c in commands]
    for c in commands:
        if c.completes:
            out.extend(f"{c.name} {n}" for n in names.get(c.completes, ()))
    return out


def suggestions(text: str, commands: Sequence[Command], limit: int = 6) -> list[Command]:
    """The commands the typed text may become (its first word as a prefix)."""
    word = text.strip().lstrip(":").split(maxsplit=1)
    prefix = word[0].lower() if word else ""
    return [c for c in commands if c.name.startswith(prefix)][:limit]
