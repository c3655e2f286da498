"""Schedules without a broker: the cron parser (time zones, DST), interval ticks, tick ids,
the schedule book (records applied in any order), and bad input as one line, exit 2."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from queuewatch.cli.main import main
from queuewatch.errors import ConfigError
from queuewatch.schedules.book import ScheduleBook
from queuewatch.schedules.cron import Cron, zone
from queuewatch.schedules.scheduler import last_tick_until
from queuewatch.schedules.spec import Schedule, schedules_from_topology, tick_id
from queuewatch.topology import topology_from_mapping


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_cron_every_five_minutes_in_utc() -> None:
    s = Schedule("c", "q", cron="*/5 * * * *")
    assert s.next_tick(ms(2026, 1, 1, 10, 2)) == ms(2026, 1, 1, 10, 5)
    assert s.next_tick(ms(2026, 1, 1, 10, 5)) == ms(2026, 1, 1, 10, 10)  # strictly after


def test_cron_in_a_time_zone_and_names() -> None:
    # 09:30 on weekdays in Paris (UTC+1 in January): 08:30 UTC; Saturday -> Monday.
    s = Schedule("c", "q", cron="30 9 * * mon-fri", timezone="Europe/Paris")
    assert s.next_tick(ms(2026, 1, 2, 9, 0)) == ms(2026, 1, 5, 8, 30)  # Fri 10:00 local -> Mon


def test_cron_dst_gap_is_skipped_and_repeated_hour_runs_once() -> None:
    # Europe/Paris jumps 02:00 -> 03:00 on 2026-03-29: 02:30 does not exist that day.
    s = Schedule("c", "q", cron="30 2 * * *", timezone="Europe/Paris")
    assert s.next_tick(ms(2026, 3, 28, 12, 0)) == ms(2026, 3, 30, 0, 30)
    # 2026-10-25 02:30 happens twice: it runs once, at the first (UTC+2, 00:30 UTC).
    first = s.next_tick(ms(2026, 10, 24, 12, 0))
    assert first == ms(2026, 10, 25, 0, 30)
    assert s.next_tick(first) == ms(2026, 10, 26, 1, 30)


def test_cron_day_of_month_or_day_of_week() -> None:
    c = Cron.parse("0 0 13 * fri")  # the 13th OR a Friday (Vixie cron)
    got = c.next_after(datetime(2026, 2, 10, tzinfo=UTC), zone("UTC"))
    assert got == datetime(2026, 2, 13, tzinfo=UTC)  # a Friday the 13th anyway
    assert Cron.parse("@daily").minutes == frozenset({0})


def test_interval_ticks_are_aligned_and_ids_deterministic() -> None:
    s = Schedule("beat", "q", every=1)
    assert s.next_tick(1_000_500) == 1_001_000
    assert tick_id("beat", 1_001_000) == "beat@1970-01-01T00:16:41Z"
    assert tick_id("beat", 1_001_250) == "beat@1970-01-01T00:16:41.250Z"
    assert last_tick_until(s, 1_000_000, 1_005_400) == 1_005_000
    assert last_tick_until(s, 1_005_000, 1_005_400) is None
    cron = Schedule("c", "q", cron="0 * * * *")
    assert last_tick_until(cron, ms(2026, 1, 1, 0, 0), ms(2026, 1, 1, 5, 30)) == ms(2026, 1, 1, 5, 0)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"cron": "61 * * * *"}, "minute: 61 is out of range 0-59"),
    ({"cron": "* * *"}, "expected 5 fields"),
    ({"cron": "*/0 * * * *"}, "step"),
    ({"cron": "0 0 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"every": 0}, "every must be a number of seconds > 0"),
    ({}, "exactly one of cron"),
    ({"cron": "0 0 * * *", "every": 5}, "exactly one of cron"),
    ({"every": 5, "missed": "sometimes"}, "missed must be one of skip, fire_once"),
])
def test_bad_schedules_are_one_clear_error(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        Schedule("s", "q", **kwargs)  # type: ignore[arg-type]
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_topology_schedule_tables() -> None:
    topo = topology_from_mapping({"queue": [{"name": "q"}], "schedule": [
        {"name": "nightly", "queue": "q", "cron": "0 3 * * *", "timezone": "Europe/Paris",
         "missed": "fire_once", "payload": {"report": "daily"}},
        {"name": "beat", "queue": "q", "every": 10}]})
    got = schedules_from_topology(topo.schedules)
    assert [s.name for s in got] == ["nightly", "beat"]
    assert got[0].payload == {"report": "daily"} and got[0].missed == "fire_once"
    with pytest.raises(ConfigError, match="unknown key"):
        schedules_from_topology(({"name": "x", "queue": "q", "every": 1, "crom": "x"},))


def test_book_applies_records_in_any_order_and_file_sync_respects_runtime_changes() -> None:
    book = ScheduleBook()
    # The ledger may be read before the definitions.
    book.apply({"op": "fired", "name": "beat", "tick": 5000, "job": "beat@x", "at": 5001})
    beat = Schedule("beat", "q", every=1)
    book.apply({"op": "put", "schedule": beat.definition(), "origin": "file", "at": 1000})
    e = book.entries["beat"]
    assert (e.cursor_ms, e.last_tick_ms, e.last_job) == (5000, 5000, "beat@x")
    book.apply({"op": "skipped", "name": "beat", "tick": 9000, "at": 9500})
    assert book.entries["beat"].cursor_ms == 9000 and book.entries["beat"].last_tick_ms == 5000
    book.apply({"op": "pause", "name": "beat", "at": 10_000})
    book.apply({"op": "put", "schedule": beat.definition(), "origin": "file", "at": 11_000})
    assert book.entries["beat"].paused  # a re-put keeps the pause
    book.apply({"op": "resume", "name": "beat", "at": 12_000})
    assert not book.entries["beat"].paused and book.entries["beat"].defined_ms == 12_000
    # The file: unchanged -> nothing; changed in the file -> written.
    assert book.file_changes([beat]) == []
    faster = Schedule("beat", "q", every=0.5)
    assert book.file_changes([faster]) == [faster]
    # Changed at run time: the file does not override it; removed at run time: not re-added.
    book.apply({"op": "put", "schedule": faster.definition(), "origin": "cli", "at": 13_000})
    assert book.file_changes([beat]) == []
    book.apply({"op": "remove", "name": "beat", "at": 14_000})
    assert book.file_changes([faster]) == []
    assert book.file_changes([Schedule("new", "q", every=3)])[0].name == "new"
    with pytest.raises(ValueError):
        book.apply({"op": "put", "schedule": {"name": "bad", "queue": "q", "cron": "x"}})


@pytest.mark.parametrize("argv", [
    ["schedules", "add", "s", "--queue", "q", "--cron", "0 25 * * *"],
    ["schedules", "add", "s", "--queue", "q", "--cron", "0 3 * * *", "--timezone", "Nowhere/City"],
])
def test_cli_bad_cron_or_zone_is_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # Given an invalid cron expression or time zone / Then one error line, exit 2, before
    # any broker is asked (the URL points nowhere).
    code = main([*argv, "--amqp-url", "amqp://u:secret@127.0.0.1:1/"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("queuewatch: error: ") and "secret" not in err[0]


def test_scheduler_with_a_bad_topology_schedule_exits_2(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    topo = tmp_path / "t.toml"
    topo.write_text('[[queue]]\nname = "q"\n[[schedule]]\nname = "n"\nqueue = "q"\n'
                    'cron = "0 3 * * *"\ntimezone = "Europe/Pariss"\n')
    code = main(["scheduler", "--topology", str(topo), "--amqp-url", "amqp://127.0.0.1:1/"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "unknown time zone 'Europe/Pariss'" in err[0]
