"""Idempotency stores: SQLite (embedded default) and Redis (when a server answers)."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from queuewatch.idempotency import IdempotencyStore, RedisStore, SqliteStore


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
    store._db.execute("INSERT INTO completed VALUES ('old', 0)")
    await store.close()
    store = SqliteStore(tmp_path / "idem.sqlite3", ttl=60)
    assert not await store.is_completed("old")
    await store.close()


async def test_redis_store_shares_keys():
    redis = pytest.importorskip("redis.asyncio")
    client = redis.from_url("redis://127.0.0.1:6379/0")
    try:
        await client.ping()
    except Exception:
        await client.aclose()
        pytest.skip("no Redis server at 127.0.0.1:6379")
    prefix = f"qwtest:{uuid.uuid4().hex}:"
    store = RedisStore(prefix=prefix, ttl=60, client=client)
    assert isinstance(store, IdempotencyStore)
    assert not await store.is_completed("a")
    await store.mark_completed("a")
    assert await store.is_completed("a")
    assert 0 < await client.ttl(prefix + "a") <= 60
    await client.delete(prefix + "a")
    await store.close()
