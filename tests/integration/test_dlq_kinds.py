"""The DLQ commands on every queue type: classic and quorum work (a foreign quorum DLQ, and
queuewatch's own quorum delay levels), a quorum queue with a delivery limit is not read
(reads count as deliveries there: proved below on this broker), a stream is refused with
one line. Through the Python API and the CLI (a subprocess), never a traceback."""

from __future__ import annotations

import json
from dataclasses import replace

import aio_pika
import pytest

from queuewatch.dlq import DeadLetterQueue
from queuewatch.dlq.kinds import QueueKindRefused
from queuewatch.topology import QueueSpec, delay_queue_name
from tests.helpers import declare, depth
from tests.integration.test_dlq_support import (
    dead_headers,
    dlq_cli,
    drain_ids,
    setup_jobs,
    take_all_ids,
)


async def put(connection, queue: str, ids: list[str], dead_of: str = "jobs") -> None:  # type: ignore[no-untyped-def]
    channel = await connection.channel(publisher_confirms=True)
    for i in ids:
        await channel.default_exchange.publish(aio_pika.Message(
            f'{{"id": "{i}"}}'.encode(), message_id=i, content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=dead_headers(dead_of)), queue)
    await channel.close()


async def declare_quorum(connection, name: str, **args) -> None:  # type: ignore[no-untyped-def]
    channel = await connection.channel()
    await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum", **args})
    await channel.close()


def assert_one_clean_line(proc, *needles: str) -> None:  # type: ignore[no-untyped-def]
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


async def test_quorum_dlq_every_command_through_the_api(connection, settings, vhost, tmp_path):
    # Given a foreign quorum DLQ with 6 dead letters of "jobs"
    await setup_jobs(connection, vhost)
    await declare_quorum(connection, "parked")
    ids = [f"q{i}" for i in range(6)]
    await put(connection, "parked", ids)
    dlq = DeadLetterQueue(connection, None, settings, "parked")
    assert (await dlq.kind()).type == "quorum"
    # When it is read twice (list, show)
    page = await dlq.peek(0, 50)
    assert [d.job_id for d in page.items] == ids and page.total == 6
    one = await dlq.get("q3")
    # Then nothing was lost; each read counted as a delivery (x-delivery-count)
    assert one is not None and one.job_id == "q3"
    assert int(one.headers.get("x-delivery-count", 0)) >= 1
    assert sorted(d.job_id for d in (await dlq.peek(0, 50)).items) == sorted(ids)
    # When it is exported, dry-run replayed, one is deleted and the rest replayed
    path = tmp_path / "parked.jsonl"
    assert await dlq.export(path) == 6
    assert (await dlq.replay(dry_run=True)).replayed == 6
    assert await dlq.delete(["q0"]) == ["q0"]
    result = await dlq.replay(via_shovel=False)
    # Then five went back to "jobs", without the DLQ's delivery count
    assert (result.replayed, result.outcome, result.error) == (5, "ok", None)
    channel = await connection.channel()
    jobs = await channel.declare_queue("jobs", passive=True)
    first = await jobs.get(timeout=5)
    assert first.message_id == "q1" and "x-delivery-count" not in (first.headers or {})
    await first.ack()
    await channel.close()
    assert sorted(await drain_ids(connection, "jobs")) == ids[2:]
    # And the export imports back (without the broker's x-delivery-count), then purges
    assert all("x-delivery-count" in json.loads(line)["headers"]
               for line in path.read_text().splitlines())
    assert (await dlq.import_(path)).confirmed == 6
    assert sorted(d.job_id for d in (await dlq.peek(0, 50)).items) == sorted(ids)
    assert await dlq.purge() == 6


async def test_quorum_dlq_and_delay_level_through_the_cli(connection, settings, vhost, tmp_path):
    # Given queuewatch's own quorum delay levels (the longest holds its messages 128 s) and a
    # quorum "jobs.dlq" (a quorum job queue's DLQ), each with dead letters of "jobs"
    await declare(connection, vhost, QueueSpec("jobs", max_priority=0), delay_levels=8)
    channel = await connection.channel()
    await channel.queue_delete("jobs.dlq")
    await channel.close()
    await declare_quorum(connection, "jobs.dlq")
    await put(connection, "jobs.dlq", ["d0", "d1", "d2"])
    delay = delay_queue_name(7)
    await put(connection, delay, ["s0", "s1", "s2"])
    for queue, ids in (("jobs", ["d0", "d1", "d2"]), (delay, ["s0", "s1", "s2"])):
        # When every DLQ command runs through the CLI
        listed = await dlq_cli(settings, "list", queue, "--json")
        shown = await dlq_cli(settings, "show", queue, ids[1])
        exported = await dlq_cli(settings, "export", queue, str(tmp_path / f"{queue}.jsonl"))
        dry = await dlq_cli(settings, "replay", queue, "--dry-run")
        deleted = await dlq_cli(settings, "delete", queue, ids[0])
        replayed = await dlq_cli(settings, "replay", queue, "--yes", "--per-message")
        imported = await dlq_cli(settings, "import", queue, str(tmp_path / f"{queue}.jsonl"))
        # Then each one worked, without a traceback
        for proc in (listed, shown, exported, dry, deleted, replayed, imported):
            assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
            assert "Traceback" not in proc.stderr, proc.stderr
        assert [i["job_id"] for i in json.loads(listed.stdout)["items"]] == ids
        assert "job id:" in shown.stdout and ids[1] in shown.stdout
        assert "would replay 3" in dry.stdout and "deleted 1" in deleted.stdout
        assert "replayed 2" in replayed.stdout and "imported 3" in imported.stdout
    # And the replayed dead letters are in "jobs" and the imports in their queues
    assert sorted(await take_all_ids(connection, "jobs")) == ["d1", "d2", "s1", "s2"]
    assert sorted(await take_all_ids(connection, "jobs.dlq")) == ["d0", "d1", "d2"]
    assert sorted(await take_all_ids(connection, delay)) == ["s0", "s1", "s2"]


async def test_reading_a_quorum_queue_with_a_delivery_limit_counts_and_drops(connection, vhost):
    """Why queuewatch does not read such a queue: on this broker a read that puts messages
    back counts as a delivery, and past the limit they are gone (no dead-letter exchange).
    If this ever fails, RabbitMQ stopped counting and the refusal could be relaxed."""
    await declare_quorum(connection, "limited", **{"x-delivery-limit": 1})
    await put(connection, "limited", ["a", "b"])
    for _ in range(2):  # consume without acking, close the channel: the DLQ "peek"
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        q = await channel.declare_queue("limited", passive=True)
        got = [await q.get(timeout=5) for _ in range(2)]
        assert [m.message_id for m in got] == ["a", "b"]
        await channel.close()
    assert await depth(connection, "limited") == 0  # two looks dropped both


async def test_a_quorum_queue_with_a_delivery_limit_is_not_read(connection, settings, vhost, tmp_path):
    # Given a quorum DLQ with a delivery limit of 2, holding 3 dead letters
    await declare_quorum(connection, "limited.dlq", **{"x-delivery-limit": 2})
    await put(connection, "limited.dlq", ["a", "b", "c"])
    (tmp_path / "one.jsonl").write_text(json.dumps({"properties": {"message_id": "x"},
                                                    "headers": {}, "body_b64": ""}) + "\n")
    # When every reading command is tried, many times over, through the CLI and the API
    for _ in range(2):
        for args in (("list", "limited.dlq"), ("show", "limited.dlq", "a"),
                     ("export", "limited.dlq", str(tmp_path / "x.jsonl")),
                     ("replay", "limited.dlq", "--dry-run"), ("replay", "limited.dlq", "--yes"),
                     ("delete", "limited.dlq", "a")):
            proc = await dlq_cli(settings, *args)
            # Then each is refused with one line naming the limit, exit 2
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert_one_clean_line(proc, "delivery limit of 2")
    dlq = DeadLetterQueue(connection, None, settings, "limited.dlq")
    with pytest.raises(QueueKindRefused, match="delivery limit of 2"):
        await dlq.peek()
    with pytest.raises(QueueKindRefused):
        await dlq.replay(via_shovel=False)
    # And nothing was delivered: all three are still there, never counted
    assert await depth(connection, "limited.dlq") == 3
    # While import and purge, which read nothing, work
    assert (await dlq.import_(tmp_path / "one.jsonl")).confirmed == 1
    assert await dlq.purge() == 4


async def test_a_stream_is_refused_with_one_line(connection, settings, vhost, tmp_path):
    # Given a stream holding dead letters
    channel = await connection.channel()
    await channel.declare_queue("parked.stream", durable=True,
                                arguments={"x-queue-type": "stream"})
    await channel.close()
    await put(connection, "parked.stream", ["s0", "s1"])
    # When any DLQ command but import is tried
    for args in (("list", "parked.stream"), ("show", "parked.stream", "s0"),
                 ("export", "parked.stream", str(tmp_path / "s.jsonl")),
                 ("replay", "parked.stream", "--yes"), ("delete", "parked.stream", "s0"),
                 ("purge", "parked.stream", "--yes")):
        proc = await dlq_cli(settings, *args)
        # Then it is refused in one line, exit 2 (and the connection was not killed for it)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert_one_clean_line(proc, "is a stream")
    dlq = DeadLetterQueue(connection, None, settings, "parked.stream")
    with pytest.raises(QueueKindRefused, match="is a stream"):
        await dlq.peek()
    # And an import (publishing only) works
    (tmp_path / "one.jsonl").write_text(json.dumps({"properties": {"message_id": "x"},
                                                    "headers": {}, "body_b64": ""}) + "\n")
    assert (await dlq.import_(tmp_path / "one.jsonl")).confirmed == 1


async def test_without_the_management_api_an_amqp_probe_tells_the_type(connection, settings, vhost):
    # Given no management API at all, a classic, a quorum and a stream queue
    no_api = replace(settings, management_url="http://127.0.0.1:9", management_urls=())
    await setup_jobs(connection, vhost)
    await put(connection, "jobs.dlq", ["c0", "c1"])
    await declare_quorum(connection, "quorum.dlq")
    channel = await connection.channel()
    await channel.declare_queue("stream.dlq", durable=True, arguments={"x-queue-type": "stream"})
    await channel.close()
    kinds = {q: await DeadLetterQueue(connection, None, no_api, q).kind()
             for q in ("jobs.dlq", "quorum.dlq", "stream.dlq")}
    # Then the probe found each type (on a throwaway connection: quorum queues answer a
    # global prefetch by closing the connection), and the shared connection still works
    assert {q: k.type for q, k in kinds.items()} == {
        "jobs.dlq": "classic", "quorum.dlq": "quorum", "stream.dlq": "stream"}
    assert [d.job_id for d in (await DeadLetterQueue(connection, None, no_api, "jobs.dlq")
                               .peek()).items] == ["c0", "c1"]
    # And a quorum queue whose limit cannot be read is not read (it might have one)
    assert kinds["quorum.dlq"].refusal("read") is not None
    assert "management API" in (kinds["quorum.dlq"].refusal("read") or "")
