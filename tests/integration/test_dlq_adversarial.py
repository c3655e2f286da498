"""Issue 15, deliver 1: every dead letter can be listed, shown, exported, imported and
replayed, whatever its headers, body or route — dead letters as other clients leave them,
published raw into a DLQ of the real broker."""

from __future__ import annotations

import json

import pytest
from pamqp.commands import Basic

from queuewatch.audit import AuditLog
from queuewatch.cli.main import main
from queuewatch.dlq import DeadLetterQueue
from queuewatch.dlq.decode import format_ms
from tests.dlq_adversarial import (
    LONG_EXCHANGE,
    ODD_NAMES,
    declare_route,
    dramatiq_dead_letters,
    publish_raw,
    qw_headers,
    take_ids,
    x_death_headers,
)
from tests.helpers import depth, wait_until

#: x-qw-dead-at-ms values no date can show (Java/.NET/Go clients send doubles).
BAD_TIMES = (10**18, -(10**15), 1e300, -1e300)




async def test_names_rabbitmq_accepts_work_end_to_end(connection, settings, vhost, cli):
    # Given exchanges and queues named as RabbitMQ allows and pamqp refused
    # ('svc|orders', non-ASCII, 'orders(v2)'), and a DLQ named 'orders|dead' holding one
    # dead letter for each route
    for i, name in enumerate(ODD_NAMES):
        await declare_route(connection, name, f"{name}.work", key=f"k|{i}")
    await publish_raw(connection, "orders|dead", [
        (f"job-{i}", qw_headers(f"{name}.work", exchange=name, routing_key=f"k|{i}"), b"{}")
        for i, name in enumerate(ODD_NAMES)])
    dlq = DeadLetterQueue(connection, None, settings, "orders|dead")
    # When it is listed (core and CLI) and shown
    page = await dlq.peek()
    code, out, err = await cli("dlq", "list", "orders|dead")
    # Then every dead letter is there with its route
    assert [d.job_id for d in page.items] == ["job-0", "job-1", "job-2"]
    assert page.items[1].death.route is not None
    assert page.items[1].death.route.exchange == "заказы"
    assert code == 0 and err == "" and "svc|orders -> k|0" in out and "orders(v2)" in out
    assert (await cli("dlq", "show", "orders|dead", "job-1"))[0] == 0
    # When it is replayed
    result = await dlq.replay(via_shovel=False)
    # Then each went back through its exchange into its queue, and the DLQ is empty
    assert (result.replayed, result.skipped, result.error) == (3, (), None)
    for i, name in enumerate(ODD_NAMES):
        assert await take_ids(connection, f"{name}.work") == [f"job-{i}"]
    assert await depth(connection, "orders|dead") == 0


async def test_broker_dead_lettered_through_odd_names_replays(connection, settings, vhost):
    # Given RabbitMQ itself dead-lettering: exchange 'svc|orders' -> queue 'orders(v2)',
    # whose DLX 'dlx|ø' parks rejected messages in 'orders|dead' (x-death names them)
    ch = await connection.channel()
    raw = await ch.get_underlay_channel()
    await raw.exchange_declare("dlx|ø", exchange_type="fanout")
    await raw.queue_declare("orders|dead")
    await raw.queue_bind("orders|dead", "dlx|ø")
    await raw.exchange_declare("svc|orders", exchange_type="direct")
    await raw.queue_declare("orders(v2)", arguments={"x-dead-letter-exchange": "dlx|ø"})
    await raw.queue_bind("orders(v2)", "svc|orders", routing_key="new|order")
    for n in range(3):
        await raw.basic_publish(b"o", exchange="svc|orders", routing_key="new|order",
                                properties=Basic.Properties(message_id=f"o{n}"))
    for _ in range(3):
        got = await raw.basic_get("orders(v2)")
        await raw.basic_reject(got.delivery.delivery_tag, requeue=False)
    await wait_until(lambda: _depth_is(connection, "orders|dead", 3), what="3 dead letters")
    await ch.close()
    # When they are replayed
    dlq = DeadLetterQueue(connection, None, settings, "orders|dead")
    death = (await dlq.peek()).items[0].death
    result = await dlq.replay(via_shovel=False)
    # Then x-death's route (with its odd names) took them back
    assert (death.original_exchange, death.original_routing_key) == ("svc|orders", "new|order")
    assert result.replayed == 3 and result.outcome == "ok"
    assert await take_ids(connection, "orders(v2)") == ["o0", "o1", "o2"]


async def _depth_is(connection, queue, n) -> bool:  # type: ignore[no-untyped-def]
    return await depth(connection, queue) == n


async def test_times_no_date_can_show_are_listed_as_numbers(connection, settings, vhost, cli,
                                                            tmp_path):
    # Given a DLQ whose dead letters carry an x-death time of 10^17 (an AMQP timestamp),
    # and x-qw-dead-at-ms of 10^18, -10^15, 1e300 and -1e300, between two ordinary ones
    await declare_route(connection, "", "dates")
    messages = [("ok-first", qw_headers("dates"), b"1"),
                ("x-death-1e17", x_death_headers("dates"), b"2")]
    messages += [(f"bad-{i}", qw_headers("dates", dead_at_ms=t), b"3")
                 for i, t in enumerate(BAD_TIMES)]
    messages.append(("ok-last", qw_headers("dates"), b"4"))
    await publish_raw(connection, "dates.dlq", messages)
    ids = [m[0] for m in messages]
    # When they are listed and shown (core and CLI)
    page = await DeadLetterQueue(connection, None, settings, "dates.dlq").peek()
    code, out, err = await cli("dlq", "list", "dates")
    # Then every dead letter is listed; what cannot be a date is shown as its number
    assert [d.job_id for d in page.items] == ids
    assert code == 0 and err == "", err
    assert all(i in out for i in ids)
    assert "100000000000000000 (not a date)" in out and "1000000000000000000 (not a date)" in out
    assert format_ms(page.items[1].death.last_death_ms) == "100000000000000000 (not a date)"
    for job in ids:
        code, out, err = await cli("dlq", "show", "dates", job)
        assert code == 0 and err == "" and job in out, (job, err)
    code, out, err = await cli("dlq", "show", "dates", "bad-2", "--json")
    assert code == 0 and json.loads(out)["job_id"] == "bad-2"
    # And they export, import and replay like any other
    export = tmp_path / "dates.jsonl"
    assert (await cli("dlq", "export", "dates", str(export)))[0] == 0
    await declare_route(connection, "", "copy")
    code, out, err = await cli("dlq", "import", "copy", str(export))
    assert code == 0 and err == "", err
    copied = await DeadLetterQueue(connection, None, settings, "copy").peek()
    original = await DeadLetterQueue(connection, None, settings, "dates.dlq").peek()
    assert [dict(d.headers) for d in copied.items] == [dict(d.headers) for d in original.items]
    result = await DeadLetterQueue(connection, None, settings, "dates.dlq").replay(via_shovel=False)
    assert result.replayed == len(ids) and result.outcome == "ok"
    assert await take_ids(connection, "dates") == ids


async def test_doubles_beyond_float32_replay_and_import(connection, settings, vhost, cli,
                                                        tmp_path):
    # Given 25 dead letters, the 20th with double headers a 32-bit float cannot hold
    # (1e300) or holds only roughly (0.1), as Java/.NET/Go clients send them
    await declare_route(connection, "", "doubles")
    messages = [(f"job-{i:02d}", qw_headers("doubles"), b"x") for i in range(25)]
    messages[20] = ("job-20", qw_headers("doubles", big=1e300, small=0.1, neg=-1e300), b"x")
    await publish_raw(connection, "doubles.dlq", messages)
    export = tmp_path / "doubles.jsonl"
    assert (await cli("dlq", "export", "doubles", str(export)))[0] == 0
    # When the DLQ is replayed
    result = await DeadLetterQueue(connection, None, settings, "doubles.dlq").replay(
        via_shovel=False)
    # Then all 25 went back, and the doubles arrived as they were
    assert (result.replayed, result.skipped) == (25, ())
    back = await DeadLetterQueue(connection, None, settings, "doubles").peek()
    h = back.items[20].headers
    assert (h["big"], h["small"], h["neg"]) == (1e300, 0.1, -1e300)
    # When the export is imported, twice
    await declare_route(connection, "", "again.dlq")
    first = await cli("dlq", "import", "again", str(export))
    second = await cli("dlq", "import", "again", str(export))
    # Then all 25 are in the queue once, and the second run added none
    assert first[0] == 0 and "imported 25 of 25" in first[1] and "'again.dlq'" in first[1]
    assert second[0] == 0 and "imported 0 of 25" in second[1] and "already there: 25" in second[1]
    assert await depth(connection, "again.dlq") == 25


@pytest.mark.parametrize("unpublishable", ["long-exchange", "long-routing-key"])
async def test_replay_with_an_unpublishable_dead_letter_three_times(
        connection, settings, vhost, unpublishable):
    # Given a DLQ of 7 dead letters whose 4th cannot be republished: its route's exchange
    # name is 200 characters (RabbitMQ takes it; the AMQP library sends at most 127), or
    # its routing key (in a header) is 300 bytes (AMQP carries at most 255)
    await declare_route(connection, "", "work")
    messages = [(f"job-{i}", qw_headers("work"), f"body {i}".encode()) for i in range(7)]
    bad = {"long-exchange": {"exchange": LONG_EXCHANGE},
           "long-routing-key": {"exchange": "amq.direct", "routing_key": "k" * 300}}
    messages[3] = ("job-3", qw_headers("work", **bad[unpublishable]), b"body 3")
    await publish_raw(connection, "work.dlq", messages)
    dlq = DeadLetterQueue(connection, None, settings, "work.dlq")
    results = []
    # When it is replayed three times
    for _ in range(3):
        results.append(await dlq.replay(via_shovel=False))
    # Then the others were replayed exactly once, in order
    assert await take_ids(connection, "work") == [f"job-{i}" for i in (0, 1, 2, 4, 5, 6)]
    assert [r.replayed for r in results] == [6, 0, 0]
    # And the unpublishable one is kept and reported, with its reason, every time
    for r in results:
        assert r.error is None and r.outcome == "partial"
        assert [(s.job_id, s.why) for s in r.skipped] == [("job-3", "unpublishable")]
    why = results[0].skipped[0].detail
    assert ("127" in why) if unpublishable == "long-exchange" else ("255 bytes" in why), why
    assert await depth(connection, "work.dlq") == 1
    # And the audit log says so
    details = [e["detail"] for e in AuditLog.from_settings(settings).read()]
    assert details == ["unpublishable=1"] * 3


async def test_import_goes_on_past_a_line_it_cannot_publish(connection, settings, vhost, cli,
                                                            tmp_path):
    # Given an export of 6 dead letters, edited: the 3rd carries an integer no AMQP field
    # holds (10^20), and a 7th line is not JSON at all
    await declare_route(connection, "", "src")
    await publish_raw(connection, "src.dlq", [(f"job-{i}", qw_headers("src"), b"b")
                                              for i in range(6)])
    export = tmp_path / "e.jsonl"
    assert (await cli("dlq", "export", "src", str(export)))[0] == 0
    lines = export.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["headers"]["huge"] = 10**20
    lines[2] = json.dumps(rec)
    export.write_text("\n".join([*lines, "this is not json"]) + "\n")
    await declare_route(connection, "", "reports.dlq")
    runs = []
    # When it is imported into 'reports' (meaning reports.dlq) three times
    for _ in range(3):
        runs.append(await cli("dlq", "import", "reports", str(export)))
    # Then the 5 good lines are in reports.dlq exactly once
    assert await take_ids(connection, "reports.dlq") == [f"job-{i}" for i in (0, 1, 3, 4, 5)]
    # And every run says where they went, and reports the two lines with their reasons
    for code, out, err in runs:
        assert code == 1 and err == "", err
        assert "into 'reports.dlq'" in out
        assert "message 3: cannot be sent as AMQP" in out and "message 7: not a queuewatch" in out
    assert "imported 5 of 7" in runs[0][1]
    assert "imported 0 of 7" in runs[1][1] and "already there: 5" in runs[1][1]


async def test_dramatiq_dead_letters_have_job_ids(connection, settings, vhost, cli):
    # Given Dramatiq dead letters in rdq.XQ (the id is in the JSON body, not message_id)
    ids = await dramatiq_dead_letters(settings, "rdq", 5)
    # When they are listed
    code, out, err = await cli("dlq", "list", "rdq.XQ")
    assert err == ""
    dlq = DeadLetterQueue(connection, None, settings, "rdq.XQ")
    page = await dlq.peek()
    # Then every row has its Dramatiq id, and they can be shown, deleted and replayed by it
    assert [d.job_id for d in page.items] == ids
    assert code == 0 and all(i in out for i in ids)
    assert (await cli("dlq", "show", "rdq.XQ", ids[1]))[0] == 0
    assert await cli("dlq", "delete", "rdq.XQ", "--job", ids[0]) == (0, "deleted 1 dead letters\n", "")
    code, out, _ = await cli("dlq", "replay", "rdq.XQ", "--job", ids[2], "--yes", "--per-message")
    assert code == 0 and "replayed 1" in out
    assert await depth(connection, "rdq") == 1 and await depth(connection, "rdq.XQ") == 3


def test_delete_job_without_a_value_gives_the_subcommand_usage(capsys):
    # When 'dlq delete Q --job' lacks its value, or gives no job id at all
    for argv in (["dlq", "delete", "q", "--job"], ["dlq", "delete", "q"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        # Then the usage shown is the subcommand's, with one error line
        assert exc.value.code == 2 and err.startswith("usage: queuewatch dlq delete"), err
        assert "--job JOB_ID" in err and err.count("error:") == 1
