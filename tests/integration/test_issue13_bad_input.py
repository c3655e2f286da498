"""Bad input for recurring jobs, rate limits and the outbox (issue 13): an invalid cron
expression or time zone, a zero or negative interval or rate, a spool directory that cannot
be written — one line on stderr and exit 2, before anything is written to the broker (the
commands below are pointed at a vhost that does not exist: reaching the broker would be a
different error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import assert_one_line_error, qw

NOWHERE = ("--vhost", "qwt-issue13-no-such-vhost")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["schedules", "add", "x", "--queue", "q", "--cron", "61 * * * *"],
         "invalid cron expression '61 * * * *': minute: 61 is out of range 0-59"),
        (["schedules", "add", "x", "--queue", "q", "--cron", "* * *"],
         "expected 5 fields"),
        (["schedules", "add", "x", "--queue", "q", "--cron", "0 3 * * *", "--timezone",
          "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["schedules", "add", "x", "--queue", "q", "--every", "0"], "every must be a number of seconds > 0"),
        (["schedules", "add", "x", "--queue", "q", "--every", "-5"], "every must be a number of seconds > 0"),
        (["schedules", "add", "x", "--queue", "q", "--every", "nan"], "every must be a number of seconds > 0"),
        (["schedules", "add", "x", "--queue", "q", "--every", "5", "--payload", "{oops"], "--payload is not JSON"),
        (["schedules", "change", "x", "--cron", "a b"], "invalid cron expression 'a b'"),
        (["schedules", "change", "x", "--every", "0"], "every must be a number of seconds > 0"),
        (["schedules", "change", "x", "--timezone", "Nowhere/X"], "unknown time zone 'Nowhere/X'"),
        (["schedules", "change", "x"], "give at least one of"),
        (["queues", "limit", "q", "0"], "rate must be a number of jobs per second > 0"),
        (["queues", "limit", "q", "-1"], "rate must be a number of jobs per second > 0"),
        (["queues", "limit", "q", "5", "--per-key", "0", "--key", "payload:c"],
         "rate must be a number of jobs per second > 0"),
        (["queues", "limit", "q", "5", "--per-key", "2"], "a per-key limit needs both"),
    ],
)
def test_bad_schedule_and_rate_input_is_one_line_and_exit_2(args, fragment):
    assert_one_line_error(qw(*args, *NOWHERE, timeout=30), fragment)


@pytest.mark.parametrize(("table", "fragment"), [
    ('cron = "61 * * * *"', "invalid cron expression '61 * * * *'"),
    ('cron = "0 3 * * *"\ntimezone = "Mars/Olympus"', "unknown time zone 'Mars/Olympus'"),
    ("every = -1", "every must be a number of seconds > 0"),
])
def test_a_scheduler_refuses_to_start_on_a_bad_schedule(tmp_path: Path, table, fragment):
    topo = tmp_path / "topology.toml"
    topo.write_text(f'[[queue]]\nname = "q"\n\n[[schedule]]\nname = "b"\nqueue = "q"\n{table}\n')
    assert_one_line_error(qw("scheduler", "--topology", str(topo), *NOWHERE, timeout=30), fragment)


@pytest.mark.parametrize(("spool", "why"), [("/proc/nope", "No such file or directory"),
                                            ("/etc/passwd/x", "Not a directory")])
def test_a_command_with_an_unwritable_spool_directory_is_one_line(spool, why):
    proc = qw("queues", "publish", "q", *NOWHERE, env={"QUEUEWATCH_OUTBOX_DIR": spool}, timeout=30)
    assert_one_line_error(proc, f"outbox spool '{spool}/")
    assert why in proc.stderr
