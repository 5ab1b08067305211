"""The ERP connector: SAP-style OData v2 queries, with key batches sent as `or`-joined `$filter`s."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import httpx

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
