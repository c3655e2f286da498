"""Shared fixtures: every test that touches RabbitMQ gets its own vhost on the real broker.

The vhost is created through the management API (with full permissions for the test user)
before the test and deleted after it, so tests are isolated and can run in parallel
(``pytest -n 2``). Nothing here mocks RabbitMQ.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from queuewatch.broker.management import ManagementClient, q
from queuewatch.config import Settings, load_settings
from tests.cluster import cluster as cluster
from tests.cluster import cluster_module as cluster_module
from tests.nodes import throwaway_node as throwaway_node


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the 3-node cluster share one (session-scoped) cluster: keep them on one
    xdist worker (``--dist loadgroup`` in ./dev test), so 2 cores never run two clusters."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("cluster"))


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never read a developer's own queuewatch.toml or state dir during tests."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.delenv("QUEUEWATCH_CONFIG", raising=False)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings from the environment (QUEUEWATCH_AMQP_URL etc.), never from a file."""
    env = {k: v for k, v in os.environ.items() if k.startswith("QUEUEWATCH_") and k != "QUEUEWATCH_CONFIG"}
    return load_settings(env=env, vhost="/")


@pytest.fixture(scope="session")
def admin_http(base_settings: Settings) -> Iterator[httpx.Client]:
    user, password = base_settings.credentials
    with httpx.Client(
        base_url=base_settings.management_url.rstrip("/") + "/api", auth=(user, password), timeout=30
    ) as client:
        try:
            client.get("/overview").raise_for_status()
        except httpx.HTTPError as exc:  # pragma: no cover - environment problem
            pytest.exit(f"RabbitMQ management API not reachable ({exc}); run ./dev setup", returncode=3)
        yield client


def make_vhost(admin_http: httpx.Client, base_settings: Settings, label: str) -> str:
    name = f"qwt-{re.sub(r'[^a-z0-9]+', '-', label.lower())[:40]}-{uuid.uuid4().hex[:8]}"
    admin_http.put(f"/vhosts/{q(name)}", json={}).raise_for_status()
    user = base_settings.credentials[0]
    admin_http.put(
        f"/permissions/{q(name)}/{q(user)}", json={"configure": ".*", "write": ".*", "read": ".*"}
    ).raise_for_status()
    return name


@pytest.fixture
def vhost(request: pytest.FixtureRequest, admin_http: httpx.Client, base_settings: Settings) -> Iterator[str]:
    """A fresh vhost for this test, deleted afterwards."""
    name = make_vhost(admin_http, base_settings, request.node.name)
    yield name
    admin_http.delete(f"/vhosts/{q(name)}")


@pytest.fixture
def settings(base_settings: Settings, vhost: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Settings bound to this test's vhost, with state (audit log, stores) in tmp_path."""
    from dataclasses import replace

    return replace(base_settings, vhost=vhost, state_dir=tmp_path / "state")


@pytest.fixture
async def mgmt(settings: Settings) -> AsyncIterator[ManagementClient]:
    client = ManagementClient(settings)
    yield client
    await client.aclose()


@pytest.fixture
async def connection(settings: Settings):  # type: ignore[no-untyped-def]
    """A plain aio-pika connection to this test's vhost."""
    from queuewatch.broker.connect import connect

    conn = await connect(settings)
    yield conn
    await conn.close()
