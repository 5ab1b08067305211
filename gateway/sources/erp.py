"""The ERP connector: SAP-style OData v2 queries, with key batches sent as `or`-joined `$filter`s."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx2

from gateway.errors import UpstreamRejected
from gateway.sources import odata_batch
from gateway.sources.connector import SourceConnector, chunked
from gateway.sources.odata_batch import BatchAnswer, BatchPart

ODATA_ROOT = "/sap/opu/odata/sap"


def quote(value: str) -> str:
    """An OData string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def any_of(field: str, values: Sequence[str]) -> str:
    """`(F eq 'a' or F eq 'b')`: how OData v2 clients ask for a batch of keys."""
    return "(" + " or ".join(f"{field} eq {quote(value)}" for value in values) + ")"


def all_equal(conditions: Mapping[str, str | None]) -> str | None:
    """`A eq 'x' and B eq 'y'` for the conditions that are set, or None when none is."""
    terms = [f"{field} eq {quote(value)}" for field, value in conditions.items() if value is not None]
    return " and ".join(terms) or None


class ErpConnector(SourceConnector):
    """OData reads, and writes with SAP's CSRF handshake and ETag concurrency control."""

    _csrf_token: str | None = None
    _csrf_fetching: asyncio.Future[str] | None = None

    async def _csrf(self, service: str, *, stale: str | None = None) -> str:
        """The CSRF token, fetched once for however many writes start together (a recall's dozens of documents)
        and shared, failure included; fetched again when the ERP refused `stale` (unless renewed meanwhile)."""
        if self._csrf_token is not None and self._csrf_token != stale:
            return self._csrf_token
        if self._csrf_fetching is None or self._csrf_fetching.done():
            self._csrf_fetching = asyncio.ensure_future(self._fetch_csrf(service))
        return await asyncio.shield(self._csrf_fetching)

    async def _fetch_csrf(self, service: str) -> str:
        response = await self.request("GET", f"{ODATA_ROOT}/{service}/", headers={"x-csrf-token": "fetch"})
        token = response.headers.get("x-csrf-token")
        if not token:
            raise UpstreamRejected("ERP handed out no CSRF token", source=self.name)
        self._csrf_token = token
        return token

    async def write(
        self, method: str, service: str, path: str, body: Any, headers: Mapping[str, str] | None = None,
        *, check: bool = True, content: bytes | None = None,
    ) -> httpx2.Response:  # fmt: skip
        """A write (`body` as JSON, or `content` as is) with a CSRF token, fetched once and renewed when the ERP says
        it expired."""
        url = f"{ODATA_ROOT}/{service}/{path}"
        sent = {"json": body} if content is None else {"content": content}
        token: str | None = None
        for _ in range(2):  # the second time with a token renewed
            token = await self._csrf(service, stale=token)
            response = await self.request(
                method, url, check=False, headers={"x-csrf-token": token, **(headers or {})}, **sent
            )
            if not (response.status_code == 403 and response.headers.get("x-csrf-token") == "Required"):
                break
        if check:
            self.raise_for_status(method, url, response)
        return response

    async def patch_with_etag(self, service: str, path: str, body: Any, etag: str | None = None) -> httpx2.Response:
        """PATCH guarded by `If-Match` (`etag` if the caller just read it, else read now): re-read the ETag and try
        once more if someone changed it meanwhile."""
        for _ in range(2):
            if etag is None:
                etag = (await self.get(f"{ODATA_ROOT}/{service}/{path}")).headers["etag"]
            response = await self.write("PATCH", service, path, body, headers={"If-Match": etag}, check=False)
            if response.status_code != 412:
                break
            etag = None
        self.raise_for_status("PATCH", path, response)
        return response

    async def batch(self, service: str, parts: Sequence[BatchPart]) -> list[BatchAnswer]:
        """Many writes in one OData `$batch` (each its own change set: applied or refused alone); the answers in
        order. Writes are never retried by the connector, so neither is a batch of them."""
        content_type, body = await odata_batch.encode(parts)
        response = await self.write("POST", service, "$batch", None, {"Content-Type": content_type}, content=body)
        try:
            answers = await odata_batch.decode(response.headers.get("content-type", ""), response.content)
        except ValueError as exc:
            raise UpstreamRejected(f"ERP answered $batch unreadably: {exc}", source=self.name) from exc
        if len(answers) != len(parts):
            raise UpstreamRejected(f"ERP answered {len(answers)} of {len(parts)} $batch requests", source=self.name)
        return answers

    async def query(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        top: int | None = None,
        skip: int | None = None,
        orderby: str | None = None,
        select: Sequence[str] = (),
        count: bool = False,
    ) -> httpx2.Response:
        return await self.get(
            f"{ODATA_ROOT}/{entity_set}",
            **{
                "$filter": filter,
                "$top": top,
                "$skip": skip,
                "$orderby": orderby,
                "$select": ",".join(select) or None,
                "$inlinecount": "allpages" if count else None,
            },
        )

    async def read_by_keys(
        self, entity_set: str, key_field: str, keys: Sequence[str], select: Sequence[str] = ()
    ) -> list[httpx2.Response]:
        """Every entity whose `key_field` is one of `keys`, in as few requests as URL length allows."""
        chunks = chunked(keys, self.settings.max_batch_keys)
        return list(
            await asyncio.gather(
                *(self.query(entity_set, filter=any_of(key_field, chunk), select=select) for chunk in chunks)
            )
        )
