"""Decode a message body for a handler, or say clearly why it cannot be decoded."""

from __future__ import annotations

import json
from typing import Any

from queuewatch.envelope import JSON
from queuewatch.worker.job import MalformedPayload

#: Bodies larger than this are refused as malformed (bytes; configurable per worker).
DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
_BYTES_TYPES = {None, "", "application/octet-stream"}


def decode_body(body: bytes, content_type: str | None, max_bytes: int) -> Any:
    """JSON for ``application/json`` (and ``+json``), text for ``text/*``, else bytes."""
    if len(body) > max_bytes:
        raise MalformedPayload(f"payload of {len(body)} bytes exceeds the limit of {max_bytes} bytes")
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype == JSON or ctype.endswith("+json"):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPayload(f"content type {ctype} but the body is not UTF-8: {exc}") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise MalformedPayload(f"content type {ctype} but the body is not JSON: {exc}") from None
    if ctype.startswith("text/"):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPayload(f"content type {ctype} but the body is not UTF-8: {exc}") from None
    if ctype in _BYTES_TYPES:
        return body
    raise MalformedPayload(
        f"unsupported content type {content_type!r} (expected application/json, text/*, "
        "application/octet-stream)"
    )
