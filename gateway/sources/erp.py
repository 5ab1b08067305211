"""The ERP connector: SAP-style OData v2 queries, with key batches sent as `or`-joined `$filter`s."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from gateway.errors import UpstreamRejected
from gateway.sources.connector import SourceConnector, chunked

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

    async def _csrf(self, service: str, *, renew: bool = False) -> str:
        if renew or self._csrf_token is None:
            response = await self.request("GET", f"{ODATA_ROOT}/{service}/", headers={"x-csrf-token": "fetch"})
            self._csrf_token = response.headers.get("x-csrf-token")
            if not self._csrf_token:
                raise UpstreamRejected("ERP handed out no CSRF token", source=self.name)
        return self._csrf_token

    async def write(
        self, method: str, service: str, path: str, body: Any, headers: Mapping[str, str] | None = None,
        *, check: bool = True,
    ) -> httpx.Response:  # fmt: skip
        """A write with a CSRF token, fetched once and renewed when the ERP says it expired."""
        url = f"{ODATA_ROOT}/{service}/{path}"
        for renew in (False, True):
            token = await self._csrf(service, renew=renew)
            response = await self.request(
                method, url, check=False, json=body, headers={"x-csrf-token": token, **(headers or {})}
            )
            if not (response.status_code == 403 and response.headers.get("x-csrf-token") == "Required"):
                break
        if check:
            self.raise_for_status(method, url, response)
        return response

    async def patch_with_etag(self, service: str, path: str, body: Any) -> httpx.Response:
        """PATCH guarded by `If-Match`: re-read the ETag and try once more if someone changed it meanwhile."""
        for _ in range(2):
            current = await self.get(f"{ODATA_ROOT}/{service}/{path}")
            etag = {"If-Match": current.headers["etag"]}
            response = await self.write("PATCH", service, path, body, headers=etag, check=False)
            if response.status_code != 412:
                break
        self.raise_for_status("PATCH", path, response)
        return response

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
    ) -> httpx.Response:
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
    ) -> list[httpx.Response]:
        """Every entity whose `key_field` is one of `keys`, in as few requests as URL length allows."""
        chunks = chunked(keys, self.settings.max_batch_keys)
        return list(
            await asyncio.gather(
                *(self.query(entity_set, filter=any_of(key_field, chunk), select=select) for chunk in chunks)
            )
        )
