"""One redaction at the edge: no secret in any line queuewatch writes.

Every secret the process knows is registered here when the settings load (the passwords in
the broker URLs, ``management_password``, ``webhook_secret``); :func:`redact` replaces them,
and the password part of any ``scheme://user:password@host`` in a text, by ``***``. The CLI
runs everything it prints through it: the one error line, the log records (a record factory
installed by :func:`install`, so every logger and handler is covered, tracebacks included)
and uncaught exceptions (``sys.excepthook``/``threading.excepthook``). The audit log redacts
its entries' free text too.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
#: Shorter secrets are not registered: replacing "pw" everywhere would garble every line.
MIN_SECRET_LENGTH = 4
_SCHEME = r"\b[a-zA-Z][a-zA-Z0-9+.-]*://"
#: ``scheme://user:password@`` in any text. The password may hold an unencoded ``/``, ``:``
#: or ``@``: as :func:`queuewatch.config.mask_url` reads a URL, it runs to the last ``@``
#: before the URL ends (whitespace, a quote, ``<>``, or the next ``scheme://`` of a list).
_URL_PASSWORD = re.compile(rf"({_SCHEME}[^\s:/@]*:)((?:(?!{_SCHEME})[^\s\"'<>])+)(@)")

_secrets: set[str] = set()
_lock = threading.Lock()


def register(secrets: Iterable[str | None], *, not_if: Iterable[str | None] = ()) -> None:
    """Remember secrets to redact (and their percent-encoded/decoded forms). A secret equal to
    one of ``not_if`` (the user name, as in guest:guest) is not one worth garbling text for."""
    skip = {s for s in not_if if s}
    with _lock:
        for secret in secrets:
            if not secret or secret in skip:
                continue
            for form in {secret, quote(secret, safe=""), unquote(secret)}:
                if len(form) >= MIN_SECRET_LENGTH:
                    _secrets.add(form)


def register_url(url: str) -> None:
    """Register the password of ``scheme://user:password@host...`` (text-based: works on a
    URL too broken to parse). As :func:`queuewatch.config.mask_url` (and the AMQP clients)
    read it: everything between ``user:`` and the last ``@``, which may itself hold ``@``,
    ``:``, ``/`` or spaces."""
    _, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return
    user, colon, password = rest[:at].partition(":")
    if colon:
        register([password], not_if=[user, unquote(user)])


def redact(text: str) -> str:
    """``text`` with every registered secret and every URL password replaced by ``***``."""
    # The known secrets first: a password with an ``@`` or a space is then gone whole, where
    # the URL pattern alone would cut it at the wrong place and leave its tail.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)


def _redacting_factory(base: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not kill the log call
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return record

    factory.queuewatch_redacting = True  # type: ignore[attr-defined]
    return factory


def _excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread else "?"
    sys.stderr.write(redact(f"Exception in thread {name}:\n" + "".join(
        traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))))


def install() -> None:
    """Redact every log record and every uncaught exception of this process (idempotent)."""
    base = logging.getLogRecordFactory()
    if not getattr(base, "queuewatch_redacting", False):
        logging.setLogRecordFactory(_redacting_factory(base))
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
