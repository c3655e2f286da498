"""DLQ replays, moves and imports while the management API cannot be read (found in a QA
pass, 2026-12-01).

Whether a destination queue drops its oldest messages past a length limit (``drop-head``,
RabbitMQ's default overflow) is read from the management API. Before: with the API cut, the
check was skipped and nothing was kept for it: 1,200 dead letters replayed into a queue of
``x-max-length 500`` said "replayed 1200", ok, and 700 were gone. Now a dead letter whose
route could not be checked stays in the DLQ, reported ``unchecked``, and a move or an import
into a queue that could not be checked is refused; once the API answers, the replay goes on
(into a queue without a limit) or keeps them as ``drops-head``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from queuewatch.config import Settings
from queuewatch.dlq import DeadLetterQueue
from queuewatch.dlq.kinds import QueueKindRefused
from tests.helpers import depth
from tests.integration.test_dlq_full_destination import _count, _parked
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
