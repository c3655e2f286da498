"""Edges of the DLQ CLI found in a QA pass: a dry run counts what the replay replays when
the original queue or exchange is gone; an export file that cannot be written, an import
file that is not UTF-8, a queue name RabbitMQ cannot hold: one line (or a per-line report),
never a traceback (``cli``: tests/integration/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time

import aio_pika
import pika

from queuewatch.dlq.replay import ReplayOptions, replay
from tests.cli_helpers import qw
from tests.helpers import depth, drain, wait_until
from tests.integration.test_dlq_support import drain_ids, publish_dead_letters, setup_jobs


async def _park(connection, work: str, parked: str, messages: list[tuple[str, str, str]]) -> None:  # type: ignore[no-untyped-def]
    """``messages`` (exchange, routing key, id) dead-lettered by a consumer of ``work`` into
    ``parked`` (RabbitMQ's x-death holds the route)."""
    ch = await connection.channel()
    dlx = await ch.declare_exchange("dlx", aio_pika.ExchangeType.FANOUT)
    dead = await ch.declare_queue(parked)
    await dead.bind(dlx)
    queue = await ch.declare_queue(work, arguments={"x-dead-letter-exchange": "dlx"})
    for exchange, key, mid in messages:
        if exchange:
            ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.DIRECT)
            await queue.bind(ex, routing_key=key)
        else:
            ex = ch.default_exchange
        await ex.publish(aio_pika.Message(mid.encode(), message_id=mid), key)
    for _ in messages:
        msg = await queue.get(timeout=5)
        await msg.reject(requeue=False)

    async def parked_all() -> bool:
        return await depth(connection, parked) == len(messages)

    await wait_until(parked_all, what="dead letters parked")
    await ch.close()


async def test_dry_run_does_not_count_dead_letters_whose_route_is_gone(cli, connection, vhost):
    # Given dead letters of 'work': two sent through the default exchange, one through the
    # exchange 'orders'; then 'work' and 'orders' are deleted (a service was retired)
    await _park(connection, "work", "work.parked",
                [("", "work", "d1"), ("", "work", "d2"), ("orders", "new", "o1")])
    ch = await connection.channel()
    await ch.queue_delete("work")
    await ch.exchange_delete("orders")
    await ch.close()
    # When the operator asks for a dry run, Then it counts none as replayable, and says why
    code, out, _err = await cli("dlq", "replay", "work.parked", "--dry-run", "--json")
    dry = json.loads(out)
    assert dry["replayed"] == 0, out
    assert sorted((s["job_id"], s["why"]) for s in dry["skipped"]) == [
        ("d1", "unroutable"), ("d2", "unroutable"), ("o1", "unroutable")]
    # And the replay does what the dry run said: nothing replayed, the same three kept
    code, out, _err = await cli("dlq", "replay", "work.parked", "--yes", "--json")
    real = json.loads(out)
    assert code == 1 and real["replayed"] == dry["replayed"] == 0
    assert sorted((s["job_id"], s["why"]) for s in real["skipped"]) == sorted(
        (s["job_id"], s["why"]) for s in dry["skipped"])
    assert await depth(connection, "work.parked") == 3


async def test_dry_run_counts_a_route_that_is_there(cli, connection, vhost):
    # Given a dead letter whose queue still exists (the check must not keep it)
    await _park(connection, "live", "live.parked", [("", "live", "l1")])
    code, out, _err = await cli("dlq", "replay", "live.parked", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["replayed"] == 1


async def test_export_to_a_path_that_cannot_be_written_is_one_line(cli, connection, vhost,
                                                                    tmp_path):
    await _park(connection, "work", "work.parked", [("", "work", "d1")])
    for target, fragment in ((str(tmp_path), "cannot write"), ("", "file name is empty"),
                             (str(tmp_path / "f" / "x.jsonl"), None)):
        if fragment is None:  # a parent that is a file
            (tmp_path / "f").write_text("")
            fragment = "cannot write"
        code, _out, err = await cli("dlq", "export", "work.parked", target)
        assert code == 2 and err.count("\n") == 1 and fragment in err, (target, err)
    assert await depth(connection, "work.parked") == 1


async def test_import_of_a_file_that_is_not_utf8_reports_the_line_and_goes_on(
        cli, connection, vhost, tmp_path):
    # Given an export of one dead letter, with a line of bytes that are not UTF-8 before it
    await _park(connection, "work", "work.parked", [("", "work", "d1")])
    export = tmp_path / "e.jsonl"
    assert (await cli("dlq", "export", "work.parked", str(export)))[0] == 0
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\xff\xfe\x00garbage\n" + export.read_bytes())
    ch = await connection.channel()
    await ch.declare_queue("copy.dlq")
    await ch.close()
    # When imported, Then the good line is imported and the bad one reported: exit 1
    code, out, err = await cli("dlq", "import", "copy.dlq", str(mixed))
    assert code == 1 and "Traceback" not in err, err
    assert "imported 1 of 2" in out and "message 1: not a queuewatch export line" in out, out
    assert await depth(connection, "copy.dlq") == 1


async def test_a_queue_name_over_255_bytes_is_one_line(cli, connection, vhost, tmp_path):
    name = "q" * 300
    (tmp_path / "e.jsonl").write_text("")
    for command in (("list", name), ("replay", name, "--dry-run"), ("purge", name, "--yes"),
                    ("import", name, str(tmp_path / "e.jsonl"))):
        code, _out, err = await cli("dlq", *command)
        assert code == 2 and err.count("\n") == 1 and "does not exist" in err, (command, err)


async def test_a_foreign_job_keeps_its_id_through_replay_and_import(cli, connection, settings,
                                                                     vhost, tmp_path):
    # Given dead letters a pika service parked without a message_id: a Celery task (its id
    # in the 'id' header), a Dramatiq message (its id in the body) and a plain one
    await asyncio.to_thread(_park_with_pika, settings.amqp_url_for())
    # When exported and imported into another queue, Then each is found by the same id
    export = tmp_path / "e.jsonl"
    assert (await cli("dlq", "export", "tasks.dead", str(export)))[0] == 0
    assert (await cli("dlq", "import", "copy.dlq", str(export)))[0] == 0
    for job_id in ("celery-1", "dq-1"):
        code, out, err = await cli("dlq", "show", "copy.dlq", job_id, "--json")
        assert code == 0 and json.loads(out)["job_id"] == job_id, err
    # When replayed, Then the copies in 'tasks' carry those ids (the plain one gets one)
    code, out, _err = await cli("dlq", "replay", "tasks.dead", "--yes")
    assert code == 0, out
    got = [m.message_id for m in await drain(connection, "tasks", 3)]
    assert got[:2] == ["celery-1", "dq-1"] and got[2]


def _park_with_pika(url: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.exchange_declare("dlx", "fanout")
        ch.queue_declare("tasks.dead")
        ch.queue_bind("tasks.dead", "dlx")
        ch.queue_declare("tasks", arguments={"x-dead-letter-exchange": "dlx"})
        ch.queue_declare("copy.dlq")
        ch.confirm_delivery()
        dramatiq = json.dumps({"actor_name": "send", "message_id": "dq-1", "args": []}).encode()
        for body, headers in ((b'{"args": [1]}', {"id": "celery-1", "task": "add"}),
                              (dramatiq, None), (b"plain", None)):
            ch.basic_publish("", "tasks", body, pika.BasicProperties(headers=headers))
        for _ in range(3):
            method, _props, _body = ch.basic_get("tasks")
            assert method is not None
            ch.basic_reject(method.delivery_tag, requeue=False)
        deadline = time.monotonic() + 10
        while ch.queue_declare("tasks.dead", passive=True).method.message_count < 3:
            assert time.monotonic() < deadline, "3 dead letters"
            time.sleep(0.05)
    finally:
        conn.close()


async def test_an_empty_filter_value_or_an_empty_age_range_is_refused(connection, settings,
                                                                      vhost):
    # Given two dead letters
    await _park(connection, "work", "work.parked", [("", "work", "d1"), ("", "work", "d2")])
    env = {"QUEUEWATCH_AMQP_URL": settings.amqp_url, "QUEUEWATCH_VHOST": vhost,
           "QUEUEWATCH_MANAGEMENT_URL": settings.management_url,
           "QUEUEWATCH_STATE_DIR": str(settings.state_dir)}
    # When a filter value is empty (``--text "$UNSET"``), or the age range holds nothing,
    # Then the replay is refused with one line, before anything is read or replayed
    for args, fragment in ((("--text", ""), "--text: must not be empty"),
                           (("--error-type", ""), "--error-type: must not be empty"),
                           (("--reason", ""), "--reason: must not be empty"),
                           (("--job", ""), "--job: must not be empty"),
                           (("--cause", ""), "--cause: must not be empty"),
                           (("--min-age", "10", "--max-age", "5"), "more than --max-age")):
        proc = await asyncio.to_thread(qw, "dlq", "replay", "work.parked", "--yes", *args,
                                       env=env, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert fragment in proc.stderr.strip().splitlines()[-1], (args, proc.stderr)
    assert await depth(connection, "work.parked") == 2 and await depth(connection, "work") == 0


async def test_a_slow_rate_is_not_taken_for_a_silent_broker(connection, vhost):
    # Given two dead letters, and a rate slower than one per stall timeout (as --rate 0.025
    # is against the 30 s default: it stopped with "no answer from RabbitMQ for 30s")
    await setup_jobs(connection, vhost)
    ids = await publish_dead_letters(connection, "jobs", 2)
    opts = ReplayOptions(rate=0.6, stall_timeout=1.0)  # one every 1.7 s; a 1 s stall limit
    # When replayed, Then both go back, and nothing is reported as a broker fault
    result = await replay(connection, "jobs.dlq", opts)
    assert result.error is None and result.replayed == 2 and result.outcome == "ok", result
    assert await drain_ids(connection, "jobs") == ids
    assert await depth(connection, "jobs.dlq") == 0


async def test_import_into_a_queue_that_drops_its_head_is_refused(cli, connection, vhost,
                                                                   tmp_path):
    # Given an export of three dead letters, and a parking queue with a length limit of 3
    # (overflow drop-head, RabbitMQ's default) that holds two dead letters already
    await _park(connection, "work", "work.parked", [("", "work", f"d{i}") for i in range(3)])
    export = tmp_path / "e.jsonl"
    assert (await cli("dlq", "export", "work.parked", str(export)))[0] == 0
    ch = await connection.channel()
    await ch.declare_queue("small.dlq", arguments={"x-max-length": 3})
    await ch.declare_queue("full.dlq", arguments={"x-max-length": 3,
                                                  "x-overflow": "reject-publish"})
    for mid in ("old1", "old2"):
        await ch.default_exchange.publish(aio_pika.Message(b"x", message_id=mid), "small.dlq")
    await ch.close()
    assert (await cli("dlq", "import", "full.dlq", str(export)))[0] == 0
    # When the export is imported (it said "imported 3 of 3", and RabbitMQ dropped the two
    # dead letters there, or two imported ones), Then it is refused with one line, and
    # nothing is lost
    code, _out, err = await cli("dlq", "import", "small.dlq", str(export))
    assert code == 2 and err.count("\n") == 1 and "drop-head" in err, err
    assert await depth(connection, "small.dlq") == 2
    # And a queue that refuses when full (reject-publish) is imported into: what does not
    # fit is reported as refused, not dropped
    code, out, _err = await cli("dlq", "import", "full.dlq", str(export), "--again")
    assert code == 1 and "refused by RabbitMQ (not in the queue): 3" in out, out
    assert await depth(connection, "full.dlq") == 3


async def test_move_into_a_queue_that_drops_its_head_is_refused(cli, connection, vhost):
    # Given 'src' with two messages, and 'small' (a length limit of 1, overflow drop-head)
    ch = await connection.channel()
    await ch.declare_queue("src")
    await ch.declare_queue("small", arguments={"x-max-length": 1})
    for mid in ("m1", "m2"):
        await ch.default_exchange.publish(aio_pika.Message(b"x", message_id=mid), "src")
    await ch.close()
    # When moved there (RabbitMQ would confirm both and drop one), Then it is refused with
    # one line, and both stay in 'src'
    code, _out, err = await cli("queues", "move", "src", "small", "--yes")
    assert code == 2 and err.count("\n") == 1 and "drop-head" in err, err
    assert await depth(connection, "src") == 2 and await depth(connection, "small") == 0
