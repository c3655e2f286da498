"""Async client for the RabbitMQ management HTTP API.

Every failure is translated into a typed error with one line a person can act on:
refused/timeout -> :class:`BrokerUnavailable`, 401 -> :class:`AuthenticationFailed` (login
failed) or :class:`NotAuthorised` (logged in, but a tag or permission is missing),
404 on the API root or a non-JSON answer -> :class:`ManagementUnavailable`, 404 on an
object -> :class:`NotFound`. Lists are fetched in pages (``page_size`` <= 500) with
``columns=`` so a broker with thousands of queues costs what it must and no more.

Failover along ``settings.management_addresses`` (a cluster's nodes, in order) is done by
:class:`~queuewatch.broker.http.FailoverHttp`: the address that answered last first, the
next one on a transport error or timeout; ``display_url`` names the current one, masked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from queuewatch.broker import http
from queuewatch.broker.tls import client_context
from queuewatch.config import Settings, mask_url
from queuewatch.errors import (
    AuthenticationFailed,
    ManagementUnavailable,
    NotAuthorised,
    NotFound,
)

MAX_PAGE_SIZE = 500
#: A queue listing answered with HTTP 500 is asked again this many times, after
#: :data:`CRASH_PAUSE` seconds: RabbitMQ 3.10 crashes a listing that meets a queue still
#: being declared (``badarg`` in ``rabbit_amqqueue_process:format/1``, its pid is ``none``),
#: which an exporter meets on its first poll while its own streams are being declared.
LIST_CRASH_RETRIES = 3
CRASH_PAUSE = 0.2
#: The one rule for how long a queue listing may take: ``http_timeout`` (10 s), or this many
#: seconds per 1,000 queues expected, whichever is longer (20,000 queues: 60 s). Listing
#: 20,000 queues took the management API 4-26 s on a loaded 2-core machine (BENCHMARKS.md,
#: issue 16), over the 10 s default that suits every other call. The count expected is the
#: last listing's, or before the first one ``/api/overview``'s ``object_totals.queues``.
LIST_SECONDS_PER_1000_QUEUES = 3.0


def listing_timeout(http_timeout: float, queues: int | None) -> float:
    """Seconds a listing of ``queues`` queues may take (see LIST_SECONDS_PER_1000_QUEUES)."""
    return max(http_timeout, (queues or 0) / 1000 * LIST_SECONDS_PER_1000_QUEUES)

#: The queue fields the monitor needs (``columns=``); nested keys use dots.
QUEUE_COLUMNS: tuple[str, ...] = (
    "name", "vhost", "type", "state", "durable", "arguments", "policy",
    "messages", "messages_ready", "messages_unacknowledged",
    "message_bytes", "consumers", "consumer_utilisation", "head_message_timestamp",
    "message_stats.publish_details.rate", "message_stats.deliver_get_details.rate",
    "message_stats.ack_details.rate", "message_stats.redeliver_details.rate",
    "message_stats.ack", "message_stats.publish", "message_stats.deliver_get",
    "idle_since",
)


def q(name: str) -> str:
    """Percent-encode a path segment (vhost ``/`` becomes ``%2F``)."""
    return quote(name, safe="")


class ManagementClient:
    """A thin async wrapper over the management API.

    Pass an ``httpx.AsyncClient`` to share a connection pool (or a transport in tests); by
    default one is created from the settings and closed by :meth:`aclose`.
    """

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        user, password = settings.credentials
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            auth=(user, password),
            timeout=settings.http_timeout,
            verify=client_context(settings) or True,
            headers={"content-type": "application/json"},
        )
        self._http = http.FailoverHttp(settings.management_addresses, self._client, settings.http_timeout)
        self._api_root_ok = False
        """Whether /api/overview answered (checked once, on the first 400/404)."""
        self.queues_seen: int | None = None
        """Queues in the last listing (None before the first): it sets the next one's timeout."""

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._http.addresses

    @property
    def base_url(self) -> str:
        """The address tried first: the one that answered last."""
        return self._http.base_url

    @property
    def display_url(self) -> str:
        return mask_url(self.base_url)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> ManagementClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- transport ---------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        missing_ok: bool = False,
        crash_retries: int = 0,
        timeout: float | None = None,
    ) -> Any:
        resp = await self._http.send(method, "/api" + path, params=params, json=json,
                                     timeout=timeout)
        for _ in range(crash_retries):  # see LIST_CRASH_RETRIES
            if resp.status_code != 500:
                break
            await asyncio.sleep(CRASH_PAUSE)
            resp = await self._http.send(method, "/api" + path, params=params, json=json,
                                         timeout=timeout)
        if resp.status_code == 401:
            user = self.settings.credentials[0]
            reason = http.refusal(resp)
            if reason is not None:
                raise NotAuthorised(
                    f"management API {method} {path}: user {user!r} is not allowed "
                    f"({reason}){_tag_hint(path)}"
                )
            raise AuthenticationFailed(
                f"management API at {self.display_url} refused the credentials of user {user!r}; "
                "check the username/password in the AMQP URL or management_username/password"
            )
        if resp.status_code in (400, 404) and path != "/overview":
            await self._check_api_root()  # a wrong path prefix is not a missing vhost
        if resp.status_code == 404:
            if missing_ok:
                return None
            raise NotFound(f"not found: {method} {path}")
        if resp.status_code >= 400:
            raise ManagementUnavailable(
                f"management API {method} {path} failed with HTTP {resp.status_code}: {http.reason(resp)}"
            )
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise ManagementUnavailable(
                f"{self.display_url} answered {path} with something that is not JSON; "
                "is management_url pointing at the RabbitMQ management plugin?"
            ) from exc

    async def _check_api_root(self) -> None:
        """Once per client, on the first 400/404: is there a management API at this address
        at all? A ``management_url`` with a wrong path prefix answers 404 (or an empty 400)
        to everything, which must not be reported as a missing vhost or queue."""
        if self._api_root_ok:
            return
        resp = await self._http.send("GET", "/api/overview", params={"columns": "rabbitmq_version"})
        if resp.status_code == 401:
            self._api_root_ok = True  # an API that asks for a login is there
            return
        try:
            ok = resp.status_code == 200 and isinstance(resp.json(), dict)
        except ValueError:
            ok = False
        if not ok:
            raise ManagementUnavailable(
                f"no RabbitMQ management API at {self.display_url}/api (HTTP {resp.status_code}); "
                "check management_url: it is the plugin's base URL (http://host:15672), "
                "with a path prefix only if management.path_prefix is set")
        self._api_root_ok = True

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params or None)

    async def get_paged(
        self, path: str, *, columns: Sequence[str] | None = None, page_size: int = MAX_PAGE_SIZE,
        extra: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """All items of a list endpoint, one page of ``page_size`` at a time."""
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            params: dict[str, Any] = {"page": page, "page_size": page_size, "disable_stats": "false"}
            if columns:
                params["columns"] = ",".join(columns)
            if extra:
                params.update(extra)
            data = await self.request("GET", path, params=params)
            if not isinstance(data, dict) or "items" not in data:
                raise ManagementUnavailable(f"unexpected answer to paged GET {path}")
            items.extend(data["items"])
            if page >= int(data.get("page_count", 1)):
                return items
            page += 1

    # -- API -----------------------------------------------------------------------------
    async def check(self) -> dict[str, Any]:
        """Ask ``/api/overview``; raises a typed error unless the API answers properly."""
        return await self.overview_columns()

    async def overview(self) -> dict[str, Any]:
        return await self.check()

    async def nodes(self, columns: str | None = None) -> list[dict[str, Any]]:
        """Every cluster node (needs the ``monitoring`` tag: :class:`NotAuthorised` without)."""
        params = {"columns": columns} if columns else {}
        return list(await self.get("/nodes", **params) or [])

    async def overview_columns(self, columns: str | None = None) -> dict[str, Any]:
        """``/api/overview`` (restricted to ``columns`` when given); :class:`ManagementUnavailable`
        when the management plugin is not there or answers something else."""
        try:
            data = await self.get("/overview", **({"columns": columns} if columns else {}))
        except NotFound:
            raise ManagementUnavailable(
                f"{self.display_url} has no /api/overview: enable the plugin with "
                "'rabbitmq-plugins enable rabbitmq_management', or check management_url "
                "(the plugin's base URL, http://host:15672, without a path unless "
                "management.path_prefix is set)"
            ) from None
        if not isinstance(data, dict):
            raise ManagementUnavailable(f"{self.display_url}/api/overview answered unexpectedly")
        return data

    async def queues_page(
        self, vhost: str | None, page: int, page_size: int, columns: Sequence[str]
    ) -> dict[str, Any]:
        """One page of the queue list (``vhost`` None: every vhost): ``items``, ``page_count``."""
        path = "/queues" if vhost is None else f"/queues/{q(vhost)}"
        data = await self.request("GET", path, params={
            "page": page, "page_size": max(1, min(page_size, MAX_PAGE_SIZE)),
            "columns": ",".join(columns), "disable_stats": "false"},
            crash_retries=LIST_CRASH_RETRIES, timeout=await self._listing_timeout())
        if not isinstance(data, dict) or "items" not in data:
            raise ManagementUnavailable(f"unexpected answer to paged GET {path}")
        self.queues_seen = int(data.get("total_count") or len(data["items"]))
        return data

    async def queues_unpaged(self, vhost: str | None, columns: Sequence[str]) -> list[dict[str, Any]]:
        """Every queue of ``vhost`` (None: every vhost) in one request, ``columns`` only.

        Linear in the number of queues on the broker's side, where every page of a paged
        listing sorts the whole list again (quadratic over a sweep): see the growth table
        in BENCHMARKS.md."""
        path = "/queues" if vhost is None else f"/queues/{q(vhost)}"
        data = await self.request("GET", path, params={"columns": ",".join(columns)},
                                  crash_retries=LIST_CRASH_RETRIES,
                                  timeout=await self._listing_timeout())
        if not isinstance(data, list):
            raise ManagementUnavailable(f"unexpected answer to GET {path}")
        self.queues_seen = len(data)
        return data

    async def _listing_timeout(self) -> float:
        """The timeout of the next queue listing (see :func:`listing_timeout`)."""
        if self.queues_seen is None:
            try:
                totals = (await self.overview_columns("object_totals")).get("object_totals")
                self.queues_seen = int(totals.get("queues", 0)) if isinstance(totals, dict) else 0
            except (ManagementUnavailable, NotAuthorised, ValueError, TypeError):
                self.queues_seen = 0  # unknown: the listing gets the default timeout
        return listing_timeout(self.settings.http_timeout, self.queues_seen)

    async def whoami(self) -> dict[str, Any]:
        return dict(await self.get("/whoami"))

    async def vhosts(self) -> list[dict[str, Any]]:
        return list(await self.get("/vhosts", columns="name") or [])

    async def create_vhost(self, vhost: str) -> None:
        await self.request("PUT", f"/vhosts/{q(vhost)}", json={})

    async def delete_vhost(self, vhost: str) -> None:
        await self.request("DELETE", f"/vhosts/{q(vhost)}", missing_ok=True)

    async def set_permissions(
        self, vhost: str, user: str, configure: str = ".*", write: str = ".*", read: str = ".*"
    ) -> None:
        await self.request(
            "PUT", f"/permissions/{q(vhost)}/{q(user)}",
            json={"configure": configure, "write": write, "read": read},
        )

    async def queues(
        self, vhost: str | None = None, columns: Sequence[str] | None = QUEUE_COLUMNS,
        page_size: int = MAX_PAGE_SIZE,
    ) -> list[dict[str, Any]]:
        path = "/queues" if vhost is None else f"/queues/{q(vhost)}"
        return await self.get_paged(path, columns=columns, page_size=page_size)

    async def queue(self, vhost: str, name: str) -> dict[str, Any] | None:
        """One queue, or None when it does not exist."""
        data = await self.request("GET", f"/queues/{q(vhost)}/{q(name)}", missing_ok=True)
        return None if data is None else dict(data)

    async def delete_queue(self, vhost: str, name: str) -> None:
        await self.request("DELETE", f"/queues/{q(vhost)}/{q(name)}", missing_ok=True)

    async def purge_queue(self, vhost: str, name: str) -> None:
        await self.request("DELETE", f"/queues/{q(vhost)}/{q(name)}/contents")

    async def exchanges(self, vhost: str) -> list[dict[str, Any]]:
        return await self.get_paged(f"/exchanges/{q(vhost)}")

    async def bindings(self, vhost: str) -> list[dict[str, Any]]:
        return list(await self.get(f"/bindings/{q(vhost)}") or [])

    async def consumers(self, vhost: str | None = None) -> list[dict[str, Any]]:
        path = "/consumers" if vhost is None else f"/consumers/{q(vhost)}"
        return list(await self.get(path) or [])

    async def connections(
        self, vhost: str | None = None, columns: str | None = None
    ) -> list[dict[str, Any]]:
        path = "/connections" if vhost is None else f"/vhosts/{q(vhost)}/connections"
        params = {"columns": columns} if columns else {}
        return list(await self.get(path, **params) or [])

    async def close_connection(self, name: str, reason: str = "closed by queuewatch") -> None:
        await self.request(
            "DELETE", f"/connections/{q(name)}", missing_ok=True
        )

    async def put_shovel(self, vhost: str, name: str, value: dict[str, Any]) -> None:
        await self.request(
            "PUT", f"/parameters/shovel/{q(vhost)}/{q(name)}", json={"value": value}
        )

    async def delete_shovel(self, vhost: str, name: str) -> None:
        """Delete a dynamic shovel's definition (a running shovel stops). RabbitMQ 3.10
        answers 500 when the shovel is defined but not running (stopping it finds no
        process), after it has deleted the definition: that counts as deleted."""
        try:
            await self.request("DELETE", f"/parameters/shovel/{q(vhost)}/{q(name)}",
                               missing_ok=True)
        except ManagementUnavailable:
            if await self.shovel_exists(vhost, name):
                raise

    async def shovel_status(self, vhost: str) -> list[dict[str, Any]]:
        return list(await self.get(f"/shovels/{q(vhost)}") or [])

    async def shovel_parameters(self, vhost: str) -> list[dict[str, Any]]:
        """The dynamic shovels defined in ``vhost`` (their parameters, not their state)."""
        return list(await self.get(f"/parameters/shovel/{q(vhost)}") or [])

    async def shovel_exists(self, vhost: str, name: str) -> bool:
        path = f"/parameters/shovel/{q(vhost)}/{q(name)}"
        return await self.request("GET", path, missing_ok=True) is not None


def _tag_hint(path: str) -> str:
    """Which user tag RabbitMQ wants for ``path`` (management tags are cumulative)."""
    if path.startswith(("/nodes", "/connections", "/channels", "/consumers")):
        return "; node and other users' connection details need the 'monitoring' tag"
    if path.startswith(("/parameters", "/policies", "/shovels")):
        return "; shovels and policies need the 'policymaker' tag"
    if path.startswith(("/vhosts", "/users", "/permissions")) and not path.startswith("/vhosts/"):
        return "; managing vhosts and users needs the 'administrator' tag"
    return ""
