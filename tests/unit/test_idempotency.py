"""Idempotency stores: SQLite (embedded default) and Redis (when a server answers)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid

import pytest

from queuewatch.idempotency import CONFIRMED_DELAY, IdempotencyStore, OutcomeStore, RedisStore, SqliteStore
from tests.helpers import redis_client


async def test_sqlite_store_remembers_completed_keys(tmp_path):
    store = SqliteStore(tmp_path / "s" / "idem.sqlite3")
    assert isinstance(store, IdempotencyStore)
    assert not await store.is_completed("a")
    await store.mark_completed("a")
    await store.mark_completed("a")
    assert await store.is_completed("a") and store.count() == 1
    await store.close()
    reopened = SqliteStore(tmp_path / "s" / "idem.sqlite3")
    assert await reopened.is_completed("a")
    await reopened.close()


async def test_sqlite_completing_commits_effect_and_key_together(tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    store._db.execute("CREATE TABLE effects (k TEXT)")
    with store.completing("k1") as db:
        db.execute("INSERT INTO effects VALUES ('k1')")
    with pytest.raises(RuntimeError), store.completing("k2") as db:
        db.execute("INSERT INTO effects VALUES ('k2')")
        raise RuntimeError("handler failed after writing")
    assert await store.is_completed("k1") and not await store.is_completed("k2")
    rows = sqlite3.connect(tmp_path / "idem.sqlite3").execute("SELECT k FROM effects").fetchall()
    assert rows == [("k1",)]
    await store.close()


async def test_sqlite_store_forgets_keys_past_the_ttl(tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    store._db.execute("INSERT INTO completed (key, at) VALUES ('old', 0)")
    store._db.execute("INSERT INTO unconfirmed (key, outcome) VALUES ('old', '{}')")
    await store.close()
    store = SqliteStore(tmp_path / "idem.sqlite3", ttl=60)
    assert not await store.is_completed("old")
    assert store._db.execute("SELECT COUNT(*) FROM unconfirmed").fetchone()[0] == 0
    await store.close()


async def test_sqlite_store_keeps_an_outcome_until_it_is_confirmed(tmp_path):
    path = tmp_path / "idem.sqlite3"
    store = SqliteStore(path)
    assert isinstance(store, OutcomeStore)
    assert await store.completed_outcome("a") == (False, None)
    await store.mark_completed("a", '{"kind":"succeeded"}')
    await store.mark_completed("b")
    assert await store.completed_outcome("a") == (True, '{"kind":"succeeded"}')
    assert await store.completed_outcome("b") == (True, None)
    await store.close()
    # (a process that died before the confirm: the outcome is still there when it reopens)
    store = SqliteStore(path)
    assert await store.completed_outcome("a") == (True, '{"kind":"succeeded"}')
    store.confirmed("a")
    await store.close()  # (close commits the deferred delete)
    store = SqliteStore(path)
    assert await store.completed_outcome("a") == (True, None)
    assert await store.is_completed("a") and store.count() == 2
    await store.close()


async def test_sqlite_confirmed_deletes_ride_with_the_next_commit(tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    await store.mark_completed("a", "A")
    store.confirmed("a")
    # (b's record does not wait for the deferred delete's timer, and commits the delete)
    await asyncio.wait_for(store.mark_completed("b", "B"), CONFIRMED_DELAY / 2)
    rows = store._db.execute("SELECT key, outcome FROM unconfirmed").fetchall()
    assert rows == [("b", "B")]
    await store.close()


async def test_redis_store_shares_keys():
    client = await redis_client()
    prefix = f"qwtest:{uuid.uuid4().hex}:"
    store = RedisStore(prefix=prefix, ttl=60, client=client)
    assert isinstance(store, IdempotencyStore)
    assert not await store.is_completed("a")
    await store.mark_completed("a")
    assert await store.is_completed("a")
    assert 0 < await client.ttl(prefix + "a") <= 60
    assert isinstance(store, OutcomeStore)
    await store.mark_completed("b", '{"kind":"succeeded"}')
    assert await store.completed_outcome("b") == (True, '{"kind":"succeeded"}')
    store.confirmed("b")
    await store.close()  # (waits for the confirm's write)
    store = RedisStore(prefix=prefix, ttl=60, client=await redis_client())
    assert await store.completed_outcome("b") == (True, None)
    assert 0 < await store._redis.ttl(prefix + "b") <= 60
    await store._redis.delete(prefix + "b")
    await store._redis.delete(prefix + "a")
    await store.close()


async def test_a_commit_waits_in_the_thread_while_another_process_holds_the_lock(tmp_path):
    # Given a store whose file another process is writing (it holds the write lock)
    path = tmp_path / "idem.sqlite3"
    store = SqliteStore(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    # When a key is recorded, the commit waits for the lock in the background thread...
    task = asyncio.create_task(store.mark_completed("a", "A"))
    await asyncio.sleep(0.3)
    assert not task.done() and store.busy_commits == 1
    # ...while the event loop goes on: lookups answer (the key counts as completed)
    assert await asyncio.wait_for(store.completed_outcome("a"), 1) == (True, None)
    assert not await asyncio.wait_for(store.is_completed("b"), 1)
    # Then once the other writer commits, the record is committed and its caller resumes
    other.execute("COMMIT")
    await asyncio.wait_for(task, 5)
    other.close()
    assert await store.completed_outcome("a") == (True, "A")
    await store.close()


_OPEN_AT = """
import asyncio, sys, time
from queuewatch.idempotency import SqliteStore
start = float(sys.argv[3])
while time.time() < start:
    pass
async def main():
    store = SqliteStore(sys.argv[1])
    await store.mark_completed(sys.argv[2])
    await store.close()
asyncio.run(main())
"""


def test_processes_opening_a_new_store_file_at_once_all_start(tmp_path):
    # Given worker processes that open the same new store file at the same instant (as
    # `worker --processes N` starts them): switching a new file to WAL used to answer
    # "database is locked" at once to the losers (1-2 of 40 starts), and that child died
    import subprocess
    import sys
    import time

    failed = []
    for trial in range(5):
        path = tmp_path / f"t{trial}" / "idem.sqlite3"
        start = time.time() + 1.0
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, str(path), f"k{i}", str(start)],
                                  stderr=subprocess.PIPE) for i in range(6)]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            if proc.returncode:
                failed.append(err.decode().strip().splitlines()[-1])
    # Then every one starts and records its key
    assert not failed, failed


def _unconfirmed(store: SqliteStore) -> list[tuple[str, str]]:
    return store._db.execute("SELECT key, outcome FROM unconfirmed ORDER BY key").fetchall()


async def test_a_key_whose_outcome_is_recorded_is_committed_alone(tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    recorded = asyncio.get_running_loop().create_future()
    # Given a key recorded with its outcome and the future of that outcome's record
    task = asyncio.create_task(store.mark_completed("a", "A", recorded))
    await asyncio.sleep(0.01)
    # Then while the record is under way the key counts as completed, with its outcome,
    # and is not yet committed
    assert not task.done()
    assert await store.completed_outcome("a") == (True, "A")
    assert store.count() == 0
    # When the record ends on record
    recorded.set_result(True)
    await asyncio.wait_for(task, 1)
    # Then the key is committed without the outcome (nothing to delete later)
    assert store.count() == 1 and _unconfirmed(store) == []
    assert await store.completed_outcome("a") == (True, None)
    await store.close()


async def test_a_key_whose_outcome_was_not_recorded_keeps_it(tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    loop = asyncio.get_running_loop()
    held, failed = loop.create_future(), loop.create_future()
    tasks = [asyncio.create_task(store.mark_completed("held", "H", held)),
             asyncio.create_task(store.mark_completed("failed", "F", failed))]
    await asyncio.sleep(0)
    held.set_result(False)  # (the recorder stopped waiting: not on record)
    failed.set_exception(ConnectionError("stream gone"))
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert _unconfirmed(store) == [("failed", "F"), ("held", "H")]
    await store.close()


async def test_a_slow_record_does_not_hold_the_key_past_the_outcome_wait(tmp_path):
    from queuewatch.idempotency import OUTCOME_WAIT

    store = SqliteStore(tmp_path / "idem.sqlite3")
    recorded = asyncio.get_running_loop().create_future()
    # Given a record that does not end (the event stream is slow or down)
    t0 = asyncio.get_running_loop().time()
    await asyncio.wait_for(store.mark_completed("a", "A", recorded), OUTCOME_WAIT + 1)
    # Then the key is committed with its outcome once OUTCOME_WAIT passed
    assert asyncio.get_running_loop().time() - t0 >= OUTCOME_WAIT * 0.9
    assert _unconfirmed(store) == [("a", "A")]
    # And when the record ends on record after all, the outcome goes with a later commit
    recorded.set_result(True)
    await asyncio.sleep(0)
    await store.mark_completed("b")
    assert _unconfirmed(store) == []
    await store.close()


async def test_close_commits_a_waiting_key_with_its_outcome(tmp_path):
    path = tmp_path / "idem.sqlite3"
    store = SqliteStore(path)
    recorded = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(store.mark_completed("a", "A", recorded))
    await asyncio.sleep(0)
    await store.close()
    await asyncio.wait_for(task, 1)
    recorded.set_result(True)  # (after close: nothing to do, no error)
    await asyncio.sleep(0)
    reopened = SqliteStore(path)
    assert await reopened.completed_outcome("a") == (True, "A")
    await reopened.close()


async def test_redis_store_forgets_an_outcome_once_recorded():
    client = await redis_client()
    prefix = f"qwtest:{uuid.uuid4().hex}:"
    store = RedisStore(prefix=prefix, ttl=60, client=client)
    recorded = asyncio.get_running_loop().create_future()
    await store.mark_completed("a", "A", recorded)
    assert await store.completed_outcome("a") == (True, "A")
    recorded.set_result(True)
    for _ in range(50):
        if await store.completed_outcome("a") == (True, None):
            break
        await asyncio.sleep(0.02)
    assert await store.completed_outcome("a") == (True, None)
    await store._redis.delete(prefix + "a")
    await store.close()
