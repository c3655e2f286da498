"""TLS and basic auth for queuewatch's HTTP endpoints, from a Prometheus web-config file.

The file format is the one Prometheus exporters read (prometheus/exporter-toolkit,
``--web.config.file``), so one file can serve both::

    tls_server_config:
      cert_file: server.crt          # relative paths: from the file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional (default NoClientCert)
      client_ca_file: clients-ca.crt                 # needed to verify client certificates
      min_version: TLS12                             # optional: TLS10..TLS13
    basic_auth_users:
      prometheus: $2b$12$...         # bcrypt hash (htpasswd -nBC 12 prometheus)

:meth:`WebConfig.load` checks everything once (the certificate and key are loaded, every hash
is a bcrypt hash) and raises :class:`WebConfigError` with one line otherwise.
:func:`protect` wraps any WSGI app with the basic-auth check (401 with ``WWW-Authenticate``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from queuewatch.errors import ConfigError

log = logging.getLogger(__name__)
#: Seconds a client gets for the TLS handshake and its request (a silent one holds a thread).
CLIENT_TIMEOUT = 10.0

#: exporter-toolkit's ``client_auth_type`` values -> what the server asks of a client.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
             "max_version"}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
#: A bcrypt hash of a random password: checked against when the user is unknown, so an
#: unknown user takes as long as a wrong password (no user enumeration by timing).
_DUMMY_HASH = b"$2b$12$GgdBQ4XoJznCH2f3WW0GUexwff1XzTGL8OX3lY5mOAid/eeM0l5yG"
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
#: Remembered successful checks (bcrypt costs ~0.2 s at cost 12; Prometheus scrapes often).
_CACHE_MAX = 256


class WebConfigError(ConfigError):
    """The web-config file is missing, unreadable, or names something unusable."""


@dataclass(frozen=True)
class WebConfig:
    """TLS and basic-auth settings of one HTTP endpoint; the empty one serves plain HTTP to all."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str | None = None
    max_version: str | None = None
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    """User -> bcrypt hash."""
    source: str = ""
    """The file it came from (for messages)."""
    _granted: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> WebConfig:
        """Read and check a web-config file; ``None``: no TLS, no auth."""
        if path is None:
            return cls()
        file = Path(path).expanduser()
        data = _read_yaml(file)
        where = str(file)
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise WebConfigError(f"web config {where!r}: unknown or unsupported key "
                                 f"{sorted(unknown)[0]!r} (supported: {', '.join(sorted(_TOP_KEYS))})")
        tls = data.get("tls_server_config") or {}
        users = data.get("basic_auth_users") or {}
        if not isinstance(tls, dict) or not isinstance(users, dict):
            raise WebConfigError(f"web config {where!r}: tls_server_config and basic_auth_users "
                                 "must be mappings")
        unknown = set(tls) - _TLS_KEYS
        if unknown:
            raise WebConfigError(f"web config {where!r}: tls_server_config.{sorted(unknown)[0]} is "
                                 f"not supported by queuewatch (supported: {', '.join(sorted(_TLS_KEYS))})")
        base = file.parent

        def path_of(key: str) -> Path | None:
            value = tls.get(key)
            if value in (None, ""):
                return None
            if not isinstance(value, str):
                raise WebConfigError(f"web config {where!r}: tls_server_config.{key} must be a path")
            p = Path(value).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                raise WebConfigError(f"web config {where!r}: tls_server_config.{key} "
                                     f"{str(p)!r} does not exist")
            return p

        auth_type = str(tls.get("client_auth_type") or "NoClientCert")
        config = cls(
            cert_file=path_of("cert_file"), key_file=path_of("key_file"),
            client_ca_file=path_of("client_ca_file"), client_auth_type=auth_type,
            min_version=tls.get("min_version"), max_version=tls.get("max_version"),
            users=_check_users(users, where), source=where,
        )
        config._check_tls()
        return config

    def _check_tls(self) -> None:
        where = f"web config {self.source!r}"
        if (self.cert_file is None) != (self.key_file is None):
            raise WebConfigError(f"{where}: tls_server_config needs both cert_file and key_file")
        if self.cert_file is None and (self.client_ca_file or self.client_auth_type != "NoClientCert"):
            raise WebConfigError(f"{where}: client certificates need cert_file and key_file too")
        if self.client_auth_type not in CLIENT_AUTH:
            hint = (" (Python verifies every client certificate it requires: use "
                    "RequireAndVerifyClientCert with client_ca_file)"
                    if self.client_auth_type == "RequireAnyClientCert" else "")
            raise WebConfigError(f"{where}: client_auth_type {self.client_auth_type!r} is not one of "
                                 f"{', '.join(CLIENT_AUTH)}{hint}")
        if CLIENT_AUTH[self.client_auth_type] != ssl.CERT_NONE and self.client_ca_file is None:
            raise WebConfigError(f"{where}: client_auth_type {self.client_auth_type} needs client_ca_file")
        for key in ("min_version", "max_version"):
            value = getattr(self, key)
            if value is not None and value not in TLS_VERSIONS:
                raise WebConfigError(f"{where}: tls_server_config.{key} {value!r} is not one of "
                                     f"{', '.join(TLS_VERSIONS)}")
        self.ssl_context()  # the certificate, key and CA load now, not at the first scrape

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server-side context for the certificate, or None for plain HTTP."""
        if self.cert_file is None or self.key_file is None:
            return None
        where = f"web config {self.source!r}"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version or "TLS12"]
        if self.max_version:
            ctx.maximum_version = TLS_VERSIONS[self.max_version]
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise WebConfigError(f"{where}: cannot load cert_file {str(self.cert_file)!r} with "
                                 f"key_file {str(self.key_file)!r}: {_ssl_reason(exc)}") from None
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise WebConfigError(f"{where}: cannot load client_ca_file "
                                     f"{str(self.client_ca_file)!r}: {_ssl_reason(exc)}") from None
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type]
        return ctx

    def authorized(self, authorization_header: str | None) -> bool:
        """Whether an ``Authorization`` header's credentials are a configured user's (True
        when no users are configured)."""
        if not self.users:
            return True
        user, password = _basic_credentials(authorization_header)
        if user is None or password is None:
            return False
        stored = self.users.get(user)
        key = hashlib.sha256(f"{user}\0{password}\0{stored}".encode()).hexdigest()
        if stored is not None and self._granted.get(key):
            return True
        import bcrypt  # a C extension loaded only where basic auth is used

        try:
            ok = bcrypt.checkpw(password.encode(), (stored or "").encode() or _DUMMY_HASH)
        except ValueError:  # bcrypt refuses passwords over 72 bytes
            ok = False
        ok = ok and stored is not None
        if ok:
            if len(self._granted) >= _CACHE_MAX:
                self._granted.clear()
            self._granted[key] = True
        return ok

    @property
    def scheme(self) -> str:
        """``https`` when serving TLS, else ``http``."""
        return "http" if self.cert_file is None else "https"

    def base_url(self, host: str, port: int) -> str:
        """``http://127.0.0.1:9672``; an IPv6 address in brackets (``https://[::1]:9673``)."""
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _read_yaml(file: Path) -> dict[str, Any]:
    import yaml

    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WebConfigError(f"web config file {str(file)!r} does not exist") from None
    except IsADirectoryError:
        raise WebConfigError(f"web config file {str(file)!r} is a directory") from None
    except PermissionError:
        raise WebConfigError(f"web config file {str(file)!r} is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise WebConfigError(f"web config file {str(file)!r} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise WebConfigError(f"web config file {str(file)!r} is not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise WebConfigError(f"web config file {str(file)!r} must be a YAML mapping")
    return data


def _check_users(users: Mapping[Any, Any], where: str) -> dict[str, str]:
    out = {}
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"web config {where!r}: basic_auth_users has an invalid user name")
        if not isinstance(hashed, str) or not hashed.startswith(_BCRYPT_PREFIXES) or len(hashed) != 60:
            # never echo the value: it may be a plain password put there by mistake
            raise WebConfigError(f"web config {where!r}: the password of basic_auth_users.{user} is "
                                 "not a bcrypt hash (make one with: htpasswd -nBC 12 USER)")
        out[user] = hashed
    return out


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header:
        return None, None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else (None, None)


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or exc).lower().replace("_", " ")
    return str(getattr(exc, "strerror", None) or exc)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def protect(app: WSGIApp, web: WebConfig, realm: str = "queuewatch") -> WSGIApp:
    """``app`` behind ``web``'s basic auth: 401 with ``WWW-Authenticate`` when the
    credentials are missing or wrong (the app itself when no users are configured)."""
    if not web.users:
        return app

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if web.authorized(environ.get("HTTP_AUTHORIZATION")):
            return app(environ, start_response)
        start_response("401 Unauthorized", [
            ("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'),
            ("Content-Type", "text/plain; charset=utf-8")])
        return [b"Unauthorized\n"]

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per request; with TLS, the handshake runs in that thread (a slow or bad
    client cannot stall ``accept``), and a failed handshake is a debug line, not a traceback."""

    daemon_threads = True
    context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(CLIENT_TIMEOUT)
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        try:
            super().finish_request(request, client_address)
        finally:
            if self.context is not None:
                request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("request from %s failed", client_address, exc_info=True)


def serve_wsgi(app: WSGIApp, port: int, bind: str, web: WebConfig | None = None) -> Any:
    """Serve ``app`` on ``bind:port`` (0: a free port) in a daemon thread, with ``web``'s TLS
    and basic auth. Returns the server: ``server.server_port``, ``server.shutdown()``."""
    web = web or WebConfig()

    class Server(_Server):
        address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET

    server = make_server(bind, port, protect(app, web), Server, handler_class=_QuietHandler)
    server.context = web.ssl_context()
    threading.Thread(target=server.serve_forever, name=f"http-{server.server_port}", daemon=True).start()
    return server
