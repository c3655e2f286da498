"""The web-config file (the Prometheus exporter format): TLS and basic auth for the metrics
endpoints; every mistake in it is one line at load time, never a password."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import bcrypt
import pytest

from queuewatch.errors import ConfigError
from queuewatch.webconfig import WebConfig, WebConfigError
from tests.tls import Pair, make_ca, make_cert

HASH = bcrypt.hashpw(b"right-pw", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tuple[Pair, Pair]:
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d)
    return ca, make_cert(d, ca, "server")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_none_is_plain_http_for_everyone():
    web = WebConfig.load(None)
    assert web.scheme == "http" and web.ssl_context() is None
    assert web.authorized(None) and web.authorized("Basic garbage")


def test_tls_and_basic_auth(tmp_path, certs):
    _ca, server = certs
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
                   f"basic_auth_users:\n  prom: '{HASH}'\n")
    web = WebConfig.load(cfg)
    assert web.scheme == "https"
    ctx = web.ssl_context()
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_NONE
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert web.authorized(basic("prom", "right-pw"))
    assert web.authorized(basic("prom", "right-pw"))  # cached, still right
    assert not web.authorized(basic("prom", "wrong"))
    assert not web.authorized(basic("nobody", "right-pw"))
    assert not web.authorized(None) and not web.authorized("Bearer x") and not web.authorized("Basic %%%")
    assert not web.authorized(basic("prom", "x" * 100))  # bcrypt's 72-byte limit: refused, no error


def test_relative_paths_and_client_certificates(tmp_path, certs):
    ca, server = certs
    for p in (ca.cert, server.cert, server.key):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    cfg = tmp_path / "web.yml"
    cfg.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   "  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n"
                   "  min_version: TLS13\n")
    ctx = WebConfig.load(cfg).ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tls_server_config:\n  cert_file: {cert}\n", "needs both cert_file and key_file"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n", "cannot load cert_file"),
        ("tls_server_config:\n  cert_file: /nope.crt\n  key_file: {key}\n", "'/nope.crt' does not exist"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: "
         "RequireAndVerifyClientCert\n", "needs client_ca_file"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: Sometimes\n",
         "is not one of"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: SSL3\n", "min_version"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cipher_suites: [x]\n",
         "cipher_suites is not supported"),
        ("tls_server_config:\n  client_ca_file: {cert}\n", "need cert_file and key_file"),
        ("basic_auth_users:\n  prom: hunter2-plain\n", "not a bcrypt hash"),
        ("basic_auth_users: [prom]\n", "must be mappings"),
        ("http_server_config:\n  http2: false\n", "unsupported key 'http_server_config'"),
        ("tls_server_config: {{cert_file: [\n", "is not valid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
    ],
)
def test_mistakes_are_one_line_config_errors(tmp_path, certs, text, fragment):
    _ca, server = certs
    cfg = tmp_path / "web.yml"
    cfg.write_text(text.format(cert=server.cert, key=server.key))
    with pytest.raises(WebConfigError) as info:
        WebConfig.load(cfg)
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert fragment in message and "\n" not in message and str(cfg) in message
    assert "hunter2" not in message


def test_a_missing_file_is_one_line(tmp_path: Path):
    with pytest.raises(WebConfigError, match="does not exist"):
        WebConfig.load(tmp_path / "absent.yml")
