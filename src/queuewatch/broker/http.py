"""HTTP to the management API along an ordered list of addresses, with failover.

:class:`FailoverHttp` knows addresses, not API paths (those live in :mod:`.management`).
A request goes to the address that answered last; on a transport error or a timeout it is
sent to the next address, once around the list, and the address that answers is
remembered. An HTTP answer of any status (401, 404, 500) is an answer: it is not retried
on another node, which would say the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from queuewatch.config import mask_url
from queuewatch.errors import BrokerUnavailable


class FailoverHttp:
    """Requests to ``addresses[current] + path``, failing over on transport errors."""

    def __init__(self, addresses: Sequence[str], client: httpx.AsyncClient, timeout: float) -> None:
        if not addresses:
            raise ValueError("FailoverHttp needs at least one address")
        self.addresses = tuple(a.rstrip("/") for a in addresses)
        self.client = client
        self.timeout = timeout
        self.current = 0
        """Index of the address that answered last (tried first)."""

    @property
    def base_url(self) -> str:
        return self.addresses[self.current]

    async def send(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                   json: Any = None, timeout: float | None = None) -> httpx.Response:
        """The first answer along the list; :class:`BrokerUnavailable` when none answers.
        ``timeout``: this request's (default: the client's, ``self.timeout``)."""
        n = len(self.addresses)
        failure: BrokerUnavailable | None = None
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        for i in range(n):
            index = (self.current + i) % n
            try:
                resp = await self.client.request(method, self.addresses[index] + path,
                                                 params=params, json=json, **extra)
            except httpx.TransportError as exc:  # timeouts are transport errors too
                failure = self._unreachable(self.addresses[index], exc, timeout)
                continue
            self.current = index
            return resp
        assert failure is not None
        if n > 1:
            raise BrokerUnavailable(f"none of the {n} management API addresses answered; "
                                    f"last: {failure}") from failure.__cause__
        raise failure

    def _unreachable(self, address: str, exc: httpx.TransportError,
                     timeout: float | None = None) -> BrokerUnavailable:
        shown = mask_url(address)
        if isinstance(exc, httpx.TimeoutException):
            err = BrokerUnavailable(f"management API at {shown} did not answer within "
                                    f"{self.timeout if timeout is None else timeout:g}s")
        elif isinstance(exc, httpx.ConnectError):  # nothing listens (or the host is unknown)
            err = BrokerUnavailable(
                f"cannot reach the management API at {shown} ({type(exc).__name__}); "
                "is RabbitMQ running with the rabbitmq_management plugin?")
        else:  # it answered once, then the connection broke: the network, not the plugin
            err = BrokerUnavailable(
                f"cannot reach the management API at {shown} ({type(exc).__name__}: the "
                "connection broke)")
        err.__cause__ = exc
        return err


def refusal(resp: httpx.Response) -> str | None:
    """RabbitMQ's reason when a 401 is about rights rather than the password, else None."""
    try:
        data = resp.json()
    except ValueError:
        return None
    if not isinstance(data, dict) or not str(data.get("error", "")).startswith("not_autho"):
        return None
    reason = str(data.get("reason") or "")
    return None if not reason or "login failed" in reason.lower() else reason[:300]


def reason(resp: httpx.Response) -> str:
    """The broker's reason for an error answer, in at most 300 characters."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(data, dict):
        return str(data.get("reason") or data.get("error") or data)[:300]
    return str(data)[:300]
