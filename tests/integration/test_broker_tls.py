"""TLS to the broker, against a throwaway node with TLS listeners (certificates made in the
test): amqps with a CA file and a client certificate (the node requires one), the management
API over https, verified by default; a missing client certificate or an unknown CA is one
line, not a traceback."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from queuewatch.broker.blocking import BlockingLink
from queuewatch.broker.connect import connect
from queuewatch.broker.management import ManagementClient
from queuewatch.config import load_settings
from queuewatch.errors import BrokerUnavailable, ConfigError
from tests.cli_helpers import qw
from tests.nodes import free_port, rabbitmq_installed, running_node
from tests.tls import Pair, make_ca, make_cert

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not rabbitmq_installed(), reason="rabbitmq-server is not installed here"),
]


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):  # type: ignore[no-untyped-def]
    """(node, amqps port, https management port, CA, client certificate)."""
    certs = tmp_path_factory.mktemp("certs")
    ca = make_ca(certs)
    server = make_cert(certs, ca, "server")
    client = make_cert(certs, ca, "client", client=True)
    for p in certs.iterdir():  # the node runs as us, but Erlang reads them after a chdir
        p.chmod(0o644 if p.suffix == ".crt" else 0o600)
    amqps, https = free_port(), free_port()
    conf = f"""
listeners.ssl.default = {amqps}
ssl_options.cacertfile = {ca.cert}
ssl_options.certfile = {server.cert}
ssl_options.keyfile = {server.key}
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
management.ssl.port = {https}
management.ssl.ip = 127.0.0.1
management.ssl.cacertfile = {ca.cert}
management.ssl.certfile = {server.cert}
management.ssl.keyfile = {server.key}
"""
    with running_node(tmp_path_factory.mktemp("rmq"), management=True, config_extra=conf) as node:
        yield node, amqps, https, ca, client


def _settings(tls_node, tmp_path: Path, **tls: Path | None):  # type: ignore[no-untyped-def]
    _node, amqps, https, _ca, _client = tls_node
    return load_settings(env={}, amqp_url=f"amqps://guest:guest@localhost:{amqps}/",
                         management_url=f"https://localhost:{https}", state_dir=tmp_path, **tls)


def _tls(ca: Pair, client: Pair) -> dict[str, Path]:
    return {"tls_ca_file": ca.cert, "tls_cert_file": client.cert, "tls_key_file": client.key}


async def test_amqps_and_https_with_ca_and_client_certificate(tls_node, tmp_path):
    _node, _amqps, _https, ca, client = tls_node
    settings = _settings(tls_node, tmp_path, **_tls(ca, client))
    conn = await connect(settings, "/", timeout=30)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue("tls-check", durable=False, auto_delete=True)
        assert queue.name == "tls-check"
    finally:
        await conn.close()
    async with ManagementClient(settings) as mgmt:
        overview = await mgmt.check()
    assert overview.get("rabbitmq_version")
    # the synchronous (pika) publisher's link too
    link = BlockingLink(settings, name="tls-test")
    try:
        link.connect(30)
    finally:
        link.close()


async def test_no_client_certificate_is_refused_in_one_line(tls_node, tmp_path):
    _node, _amqps, _https, ca, _client = tls_node
    settings = _settings(tls_node, tmp_path, tls_ca_file=ca.cert)
    with pytest.raises(BrokerUnavailable) as info:
        await connect(settings, "/", timeout=30)
    assert "\n" not in str(info.value) and "cannot connect to RabbitMQ" in str(info.value)


async def test_an_unknown_ca_is_refused_by_default(tls_node, tmp_path):
    # Given the node's certificate, signed by a CA the client was not given (system CAs only)
    _node, _amqps, _https, _ca, client = tls_node
    settings = _settings(tls_node, tmp_path, tls_cert_file=client.cert, tls_key_file=client.key)
    with pytest.raises(BrokerUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await connect(settings, "/", timeout=30)
    async with ManagementClient(settings) as mgmt:
        with pytest.raises(BrokerUnavailable):
            await mgmt.check()


def test_bad_tls_files_are_one_line(tls_node, tmp_path):
    _node, _amqps, _https, ca, client = tls_node
    with pytest.raises(ConfigError, match=r"tls_cert_file .* cannot be loaded"):
        from queuewatch.broker.tls import client_context

        client_context(replace(_settings(tls_node, tmp_path), tls_cert_file=ca.cert, tls_key_file=client.key))


def test_cli_status_over_tls(tls_node, tmp_path):
    _node, amqps, https, ca, client = tls_node
    env = {"QUEUEWATCH_AMQP_URL": f"amqps://guest:guest@localhost:{amqps}/",
           "QUEUEWATCH_MANAGEMENT_URL": f"https://localhost:{https}",
           "QUEUEWATCH_TLS_CA_FILE": str(ca.cert), "QUEUEWATCH_TLS_CERT_FILE": str(client.cert),
           "QUEUEWATCH_TLS_KEY_FILE": str(client.key), "QUEUEWATCH_STATE_DIR": str(tmp_path)}
    proc = qw("status", "--listen", "0.5", env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
