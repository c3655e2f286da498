"""TLS to the broker: one client context for amqps and an https management API.

With none of ``tls_ca_file``, ``tls_cert_file``, ``tls_key_file`` set, the libraries' own
defaults apply (the system's CAs, verified; an amqps URL's ``cafile=`` query still works).
With any of them set, :func:`client_context` builds the context both AMQP and HTTP use:
the server is verified against ``tls_ca_file`` (or the system's CAs) and its host name is
checked, always; ``tls_cert_file``/``tls_key_file`` are the client certificate for brokers
that ask for one (``ssl_options.verify = verify_peer``).
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

from queuewatch.config import Settings
from queuewatch.errors import ConfigError


def client_context(settings: Settings) -> ssl.SSLContext | None:
    """The client TLS context of ``settings``, or None when none of the TLS settings is set."""
    if not (settings.tls_ca_file or settings.tls_cert_file or settings.tls_key_file):
        return None
    return _context(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)


@functools.lru_cache(maxsize=8)
def _context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    if key is not None and cert is None:
        raise ConfigError("tls_key_file is set without tls_cert_file (the client certificate)")
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"tls_ca_file {str(ca)!r} cannot be loaded: {_reason(exc)}") from None
    if cert is not None:
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"tls_cert_file {str(cert)!r} (key {str(key or cert)!r}) cannot be "
                              f"loaded: {_reason(exc)}") from None
    return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    return str(getattr(exc, "strerror", None) or exc)
