"""A collection listed in pages and then watched, kept in a small index: the operator's
pod index (`PodWatch`), and the activator's models and pods.

kopf gives every watched object a worker task, a deep copy of its body and a queue that
holds every listed body until its worker has run: at 10,000 pods that was most of the
operator's memory. The observer needs a few facts per pod (`PodInfo`), so this watch keeps
only those, as client-go's reflector does: list (in pages), watch from the list's
resourceVersion, re-watch from the last version seen after a dropped stream, list again
when the server says that version is gone (410).
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, Self, TypeVar
from urllib.parse import urlencode

import aiohttp
import kopf

from modelpilot.api import MODEL_LABEL, Key
from modelpilot.controller.kopf_session import session_for
from modelpilot.observer.pod_index import PodIndex

log = logging.getLogger(__name__)
PAGE = 200
WATCH_SECONDS = 300  # the server ends each watch after this long; it is then resumed
BACKOFF = (1, 2, 4, 8, 15, 30)


class Gone(Exception):
    """The resourceVersion is too old (HTTP 410): list again."""


class Unauthorized(Exception):
    """Credentials expired (a rotated ServiceAccount token): log in again."""


class Index(Protocol):
    """What a watch keeps: built from watch events and whole lists (pure, no I/O)."""

    def __init__(self) -> None: ...

    def apply(self, event: str, body: dict[str, Any]) -> set[Key]:
        """One watch event: the models it changed."""

    def replace(self, namespace: str | None, fresh: Self) -> set[Key]:
        """A new list of `namespace` (None: all) replaces what was known there."""


IndexT = TypeVar("IndexT", bound=Index)


class ListWatch(Generic[IndexT]):
    def __init__(
        self,
        login: Callable[[], kopf.ConnectionInfo | None],
        namespaces: list[str],
        on_change: Callable[[Key], None],
        index: type[IndexT],
        collection: str,  # e.g. "/api/v1/{}pods": "{}" takes "namespaces/NS/" or nothing
        selector: str = "",
    ) -> None:
        self.login, self.on_change = login, on_change
        self.scopes: list[str | None] = list(namespaces) or [None]  # None: every namespace
        self.index_type, self.collection, self.selector = index, collection, selector
        self.index = index()
        self.what = collection.rsplit("}", 1)[-1]  # how the log names it: "pods"
        self.listed = asyncio.Event()  # every scope listed once: the index is whole
        self._listed: set[str | None] = set()
        self._server = ""
        self._session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._keep(scope) for scope in self.scopes))
        finally:
            await self._close()

    async def _keep(self, namespace: str | None) -> None:
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._list(namespace)
                version = await self._watch(namespace, version)
                failures = 0
            except Gone:
                version = None
            except Unauthorized:
                await self._close()
                failures += 1
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                where = namespace or "all namespaces"
                log.warning("%s watch (%s): %s: %s", self.what, where, type(exc).__name__, exc)
                failures += 1
            except Exception:  # a bug: said with its traceback; the watch must go on
                log.exception("%s watch (%s) failed", self.what, namespace or "all namespaces")
                failures += 1
            if failures:
                await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF)) - 1])

    async def _list(self, namespace: str | None) -> str:
        fresh = self.index_type()
        params = {"labelSelector": self.selector, "limit": str(PAGE)}
        while True:
            meta = self._index_page(await self._get_json(namespace, params), fresh)
            if not meta.get("continue"):
                break
            params["continue"] = meta["continue"]
        for key in self.index.replace(namespace, fresh):
            self.on_change(key)
        self._listed.add(namespace)
        if len(self._listed) == len(self.scopes):
            self.listed.set()
        return str(meta.get("resourceVersion") or "")

    @staticmethod
    def _index_page(page: dict[str, Any], fresh: Index) -> dict[str, Any]:
        """Index a page's objects; its metadata. The page is let go before the next is read:
        parsed, a page of pod bodies costs tens of times its size on the wire."""
        for body in page.get("items") or []:
            fresh.apply("ADDED", body)
        meta: dict[str, Any] = page.get("metadata") or {}
        return meta

    async def _watch(self, namespace: str | None, version: str) -> str:
        """Events from `version` until the server ends the stream: the last version seen."""
        params = {
            "labelSelector": self.selector,
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        session = await self._connect()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=WATCH_SECONDS + 30)
        async with session.get(self._url(namespace, params), timeout=timeout) as response:
            self._check(response.status)
            async for event in _lines(response.content):
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if body.get("code") == 410:
                        raise Gone()
                    raise ValueError(f"watch error {body.get('code')}: {body.get('reason')}")
                version = (body.get("metadata") or {}).get("resourceVersion") or version
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    for key in self.index.apply(kind, body):
                        self.on_change(key)
        return version

    async def _get_json(self, namespace: str | None, params: dict[str, str]) -> dict[str, Any]:
        session = await self._connect()
        timeout = aiohttp.ClientTimeout(total=60)
        async with session.get(self._url(namespace, params), timeout=timeout) as response:
            self._check(response.status)
            data: dict[str, Any] = await response.json(loads=json.loads)
            return data

    def _check(self, status: int) -> None:
        if status == 410:
            raise Gone()
        if status == 401:
            raise Unauthorized()
        if status != 200:
            raise ValueError(f"the API server answered {status}")

    def _url(self, namespace: str | None, params: dict[str, str]) -> str:
        where = self.collection.format(f"namespaces/{namespace}/" if namespace else "")
        return f"{self._server}{where}?{urlencode(params)}"

    async def _connect(self) -> aiohttp.ClientSession:
        if self._session is None:
            info = self.login()
            if info is None:
                raise ValueError("no credentials for the API server")
            self._server = info.server.rstrip("/")
            # A watch per scope, and a list while one is being resumed.
            self._session = session_for(info, limit=2 * len(self.scopes))
        return self._session

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class PodWatch(ListWatch[PodIndex]):
    """The model pods (those with the model label), by model."""

    def __init__(
        self,
        login: Callable[[], kopf.ConnectionInfo | None],
        namespaces: list[str],
        on_change: Callable[[Key], None],
    ) -> None:
        super().__init__(login, namespaces, on_change, PodIndex, "/api/v1/{}pods", MODEL_LABEL)

    @property
    def pods(self) -> PodIndex:
        return self.index


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The JSON events of a watch stream, one per line, whatever the line's length."""
    pending = b""
    async for chunk in stream.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)
