"""DLQ replays, moves and imports while the management API cannot be read (found in a QA
pass, 2026-12-01).

Whether a destination queue drops its oldest messages past a length limit (``drop-head``,
RabbitMQ's default overflow) is read from the management API. Before: with the API cut, the
check was skipped and nothing was kept for it: 1,200 dead letters replayed into a queue of
``x-max-length 500`` said "replayed 1200", ok, and 700 were gone. Now a dead letter whose
route could not be checked stays in the DLQ, reported ``unchecked``, and a move or an import
into a queue that could not be checked is refused; once the API answers, the replay goes on
(into a queue without a limit) or keeps them as ``drops-head``.

``--skip-limit-check`` (``skip_limit_check=True``) is the way out for a broker without the
management plugin: before it, nothing could be replayed, moved or imported there at all. With
it, what cannot be checked goes (the operator vouches there is no drop-head limit), counted
and audited; what the API shows to drop its head still stays.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from queuewatch.audit import AuditLog
from queuewatch.cli.main import main
from queuewatch.config import Settings
from queuewatch.dlq import DeadLetterQueue
from queuewatch.dlq.kinds import QueueKindRefused
from tests.helpers import depth
from tests.integration.test_dlq_full_destination import _count, _parked
from tests.integration.test_dlq_support import take_all_ids
from tests.proxy import TcpProxy


def _through(settings: Settings, api: TcpProxy) -> Settings:
    return replace(settings, management_url=f"http://127.0.0.1:{api.port}", management_urls=())


async def _jobs(connection, limit: int | None) -> None:  # type: ignore[no-untyped-def]
    ch = await connection.channel()
    args = {"x-max-length": limit} if limit is not None else None
    await ch.declare_queue("jobs", durable=True, arguments=args)
    await ch.declare_queue("jobs.dlq", durable=True)
    await ch.close()


@pytest.mark.parametrize("fault", ["cut", "blackhole"])
@pytest.mark.parametrize("via", [False, None])
async def test_replay_into_a_dropping_queue_with_the_api_down_keeps_them(
        connection, settings, vhost, fault, via):
    # Given 1,200 dead letters of 'jobs', whose length limit of 500 drops its head
    await _jobs(connection, 500)
    ledger = await _parked(connection, 1200)
    with TcpProxy(("127.0.0.1", 15672)) as api:
        # When the management API is unreachable (refused, or silent) and they are replayed
        # (per message, or by the automatic choice, which would take a shovel)
        getattr(api, fault)()
        blind = replace(_through(settings, api), http_timeout=2.0)
        res = await DeadLetterQueue(connection, None, blind, "jobs.dlq").replay(via_shovel=via)
        # Then none is replayed: each one stays, reported unchecked, naming the API
        assert res.replayed == 0 and res.count("unchecked") == 1200, res.skipped[:1]
        assert res.outcome == "partial" and "management API" in res.skipped[0].detail
        # And once the API answers again, a replay keeps them for the known reason
        api.restore()
        again = await DeadLetterQueue(connection, None, _through(settings, api),
                                      "jobs.dlq").replay(via_shovel=via)
    assert again.replayed == 0 and again.count("drops-head") == 1200, again.skipped[:1]
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary


async def test_with_the_api_back_a_replay_into_a_queue_without_a_limit_goes_on(
        cli, connection, settings, vhost, monkeypatch):
    # Given 300 dead letters of a queue without a length limit, and the API cut
    await _jobs(connection, None)
    ledger = await _parked(connection, 300)
    with TcpProxy(("127.0.0.1", 15672)) as api:
        api.cut()
        monkeypatch.setenv("QUEUEWATCH_MANAGEMENT_URL", f"http://127.0.0.1:{api.port}")
        # When the CLI replays them: a dry run, then the replay
        code, out, _ = await cli("dlq", "replay", "jobs", "--dry-run")
        assert code == 1 and "would replay 0" in out and "unchecked" in out, out
        code, out, _ = await cli("dlq", "replay", "jobs", "--yes")
        # Then every one stays (exit 1, unchecked), none in 'jobs'
        assert code == 1 and "unchecked" in out, out
        assert await depth(connection, "jobs") == 0
        assert await depth(connection, "jobs.dlq") == 300
        # And with the API back, the same command replays them all
        api.restore()
        code, out, _ = await cli("dlq", "replay", "jobs", "--yes")
    assert code == 0 and "unchecked" not in out, out
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary
    assert await depth(connection, "jobs.dlq") == 0


async def test_a_move_or_import_into_an_unchecked_queue_is_refused(
        connection, settings, vhost, tmp_path: Path):
    # Given 200 dead letters, a queue 'small' whose limit drops its head, and the API cut
    await _jobs(connection, None)
    ch = await connection.channel()
    await ch.declare_queue("small", durable=True, arguments={"x-max-length": 50})
    await ch.close()
    ledger = await _parked(connection, 200)
    export = tmp_path / "dead.jsonl"
    dlq = DeadLetterQueue(connection, None, settings, "jobs.dlq")
    await dlq.export(export)
    assert len(export.read_text().splitlines()) >= 200
    with TcpProxy(("127.0.0.1", 15672)) as api:
        api.cut()
        blind = _through(settings, api)
        # When moved, or an export imported, into 'small'
        with pytest.raises(QueueKindRefused, match="cannot tell whether 'small' drops"):
            await DeadLetterQueue(connection, None, blind, "jobs.dlq").move("small")
        with pytest.raises(QueueKindRefused, match="cannot tell whether 'small' drops"):
            await DeadLetterQueue(connection, None, blind, "small").import_(export)
    # Then nothing moved and nothing was imported
    assert await depth(connection, "small") == 0
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary


def _last(settings: Settings, action: str) -> dict[str, object]:
    return [e for e in AuditLog.from_settings(settings).read() if e["action"] == action][-1]


@pytest.mark.parametrize("fault", ["cut", "blackhole"])
@pytest.mark.parametrize("via", [False, None])
async def test_skip_limit_check_replays_what_the_api_cannot_check(
        connection, settings, vhost, fault, via):
    # Given 1,200 dead letters of 'jobs', a queue without a length limit
    await _jobs(connection, None)
    ledger = await _parked(connection, 1200)
    with TcpProxy(("127.0.0.1", 15672)) as api:
        # When the management API is unreachable (refused, or silent) and the operator
        # replays them vouching that 'jobs' has no limit that drops its head
        getattr(api, fault)()
        blind = replace(_through(settings, api), http_timeout=2.0)
        res = await DeadLetterQueue(connection, None, blind, "jobs.dlq").replay(
            via_shovel=via, skip_limit_check=True)
    # Then every one is replayed, counted as sent unchecked; none lost or duplicated
    assert (res.replayed, res.outcome, res.unchecked_sent) == (1200, "ok", 1200), res.skipped[:1]
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary
    assert await depth(connection, "jobs.dlq") == 0
    # And the audit entry says the check was skipped
    entry = _last(settings, "replay")
    assert entry["target"]["skip_limit_check"] is True  # type: ignore[index]
    assert "sent-unchecked=1200" in str(entry["detail"]), entry


async def test_without_the_flag_the_unchecked_report_names_it_and_with_it_all_go(
        cli, connection, settings, vhost, monkeypatch):
    # Given 300 dead letters of a queue without a length limit, and the API cut
    await _jobs(connection, None)
    ledger = await _parked(connection, 300)
    with TcpProxy(("127.0.0.1", 15672)) as api:
        api.cut()
        monkeypatch.setenv("QUEUEWATCH_MANAGEMENT_URL", f"http://127.0.0.1:{api.port}")
        # When replayed without the flag: every one is kept, and the report names the flag
        code, out, _ = await cli("dlq", "replay", "jobs", "--yes")
        assert code == 1 and "unchecked" in out and "--skip-limit-check" in out, out
        assert await depth(connection, "jobs") == 0
        # When a dry run and a replay are made with it
        code, out, _ = await cli("dlq", "replay", "jobs", "--dry-run", "--skip-limit-check")
        assert code == 0 and "would replay 300" in out and "unchecked " not in out, out
        assert "length limit read" in out, out
        code, out, _ = await cli("dlq", "replay", "jobs", "--yes", "--skip-limit-check")
    # Then the dry run counted them as replayable and the replay sent them all
    assert code == 0 and "replayed 300" in out and "length limit read" in out, out
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary
    entry = _last(settings, "replay")
    assert entry["target"]["skip_limit_check"] is True, entry  # type: ignore[index]


@pytest.mark.parametrize("via", [False, None])
async def test_skip_limit_check_still_keeps_what_the_api_shows_drops_head(
        cli, connection, settings, vhost, via, tmp_path: Path):
    # Given 1,200 dead letters of 'jobs', whose limit of 500 drops its head, the API answering
    await _jobs(connection, 500)
    ledger = await _parked(connection, 1200)
    # When replayed with the flag (a dry run by the CLI, then the replay)
    code, out, _ = await cli("dlq", "replay", "jobs", "--dry-run", "--skip-limit-check")
    assert code == 1 and "would replay 0" in out and "drops-head" in out, out
    res = await DeadLetterQueue(connection, None, settings, "jobs.dlq").replay(
        via_shovel=via, skip_limit_check=True)
    # Then each one stays, reported drops-head: the flag skips only what cannot be checked
    assert (res.replayed, res.count("drops-head"), res.unchecked_sent) == (0, 1200, 0)
    # And a move or an import into such a queue is still refused
    export = tmp_path / "dead.jsonl"
    await DeadLetterQueue(connection, None, settings, "jobs.dlq").export(export)
    with pytest.raises(QueueKindRefused, match="has a length limit"):
        await DeadLetterQueue(connection, None, settings, "jobs.dlq").move(
            "jobs", skip_limit_check=True)
    with pytest.raises(QueueKindRefused, match="has a length limit"):
        await DeadLetterQueue(connection, None, settings, "jobs").import_(
            export, skip_limit_check=True)
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary


async def test_skip_limit_check_lets_a_move_or_import_through_without_the_api(
        cli, connection, settings, vhost, monkeypatch, tmp_path: Path):
    # Given 200 dead letters, an export of them, and 'jobs' and 'restored' without a limit
    await _jobs(connection, None)
    ch = await connection.channel()
    await ch.declare_queue("restored", durable=True)
    await ch.close()
    ledger = await _parked(connection, 200)
    export = tmp_path / "dead.jsonl"
    await DeadLetterQueue(connection, None, settings, "jobs.dlq").export(export)
    with TcpProxy(("127.0.0.1", 15672)) as api:
        api.cut()
        blind = _through(settings, api)
        monkeypatch.setenv("QUEUEWATCH_MANAGEMENT_URL", f"http://127.0.0.1:{api.port}")
        # When moved, or imported, without the flag: refused, naming it
        with pytest.raises(QueueKindRefused, match="or with --skip-limit-check if the destination has no"):
            await DeadLetterQueue(connection, None, blind, "jobs.dlq").move("jobs")
        with pytest.raises(QueueKindRefused, match="or with --skip-limit-check if the destination has no"):
            await DeadLetterQueue(connection, None, blind, "restored").import_(export)
        assert await depth(connection, "jobs") == 0 and await depth(connection, "restored") == 0
        # When moved (the CLI) and imported with it
        code, out, err = await cli("queues", "move", "jobs.dlq", "jobs", "--yes",
                                   "--skip-limit-check")
        assert code == 0 and "moved 200 of 200" in out, (out, err)
        got = await DeadLetterQueue(connection, None, blind, "restored").import_(
            export, skip_limit_check=True)
    # Then every message went, none lost or duplicated, and both audit entries say so
    assert got.confirmed == 200 and got.outcome == "ok", got.report()
    assert sorted(await take_all_ids(connection, "restored")) == sorted(ledger.sent)
    summary = await _count(connection, ledger)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary
    assert _last(settings, "move")["target"]["skip_limit_check"] is True  # type: ignore[index]
    assert _last(settings, "import")["target"]["skip_limit_check"] is True  # type: ignore[index]


@pytest.mark.parametrize("argv", [["dlq", "replay"], ["dlq", "import"], ["queues", "move"]])
def test_skip_limit_check_is_in_the_help(argv, capsys):
    # When a command's help is asked for
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    # Then it offers the flag
    assert exit_.value.code == 0 and "--skip-limit-check" in capsys.readouterr().out
