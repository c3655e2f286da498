"""Fixtures shared by the integration tests (the broker-facing ones are in tests/conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from queuewatch.cli.main import main


@pytest.fixture
def cli(settings, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """Run ``queuewatch ARGS`` in-process, in a thread (it runs its own event loop), on this
    test's vhost and state dir: ``await cli(...)`` gives (exit code, stdout, stderr)."""
    monkeypatch.setenv("QUEUEWATCH_AMQP_URL", settings.amqp_url)
    monkeypatch.setenv("QUEUEWATCH_MANAGEMENT_URL", settings.management_url)
    monkeypatch.setenv("QUEUEWATCH_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("QUEUEWATCH_VHOST", settings.effective_vhost)

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
