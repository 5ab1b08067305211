"""The `lots` list: filtered pages of lots, driven by the system that can filter on what was asked.

ERP filters batches by plant, material and supplier; a quality-status filter is the QMS's to answer,
so such a query pages through QMS (which also knows plant, material and supplier of each lot); `consistent: false`
pages through the divergent lots reconciliation stored (which keep plant, material, supplier and QMS's status).
Cursors are opaque offsets into the driving system's ordered list.

The filter sent is narrowed to what the caller may read (`within`), so `totalCount` and `hasNextPage` count
visible lots only: a supplier asks for its own lots, a plant-scoped caller for lots of its plants, and a filter
wholly outside the caller's scope is refused rather than answered with another scope's counts.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace

from gateway.authz import ReadScope
from gateway.contracts.erp import BatchQuery, LotPage
from gateway.contracts.qms import LotQualityPage, LotStatusQuery
from gateway.errors import BadUserInput, Forbidden
from gateway.model import QualityStatus
from gateway.reads import Loaders
from gateway.store.divergence import DivergenceFilter, DivergentLots
from gateway.upstream import Upstream

_PREFIX = "lots:"


@dataclass(frozen=True)
class LotFilter:
    plants: frozenset[str] = frozenset()  # lots of any of these plants; empty: of every plant
    material: str | None = None
    supplier: str | None = None
    quality_status: QualityStatus | None = None
    consistent: bool | None = None  # False: the lots reconciliation found divergent


def within(where: LotFilter, scope: ReadScope) -> LotFilter:
    """`where` narrowed to the lots `scope` reads: unchanged when one grant covers it whole (all plants, plants
    of the caller's, the caller's own supplier), else restricted to the caller's plants or own supplier.
    Refused when it asks only for lots the caller may not read, or when both of a caller's grants could apply
    (no single source query counts "these plants or this supplier")."""
    if (
        scope.all_plants
        or (where.plants and where.plants <= scope.plants)
        or (scope.supplier is not None and where.supplier == scope.supplier)
    ):
        return where
    by_plant = bool(scope.plants) and not where.plants
    by_supplier = scope.supplier is not None and where.supplier is None
    if by_plant and by_supplier:
        raise BadUserInput("filter by plant or by supplier: this token reads lots of both kinds", argument="filter")
    if by_plant:
        return replace(where, plants=scope.plants)
    if by_supplier:
        return replace(where, supplier=scope.supplier)
    granted = [*sorted(scope.plants), *([f"supplier {scope.supplier}"] if scope.supplier else [])]
    raise Forbidden(
        f"readLot denied: the filter asks for lots outside what this token reads ({', '.join(granted) or 'none'})",
        policy_ids=(), action="readLot", resource="Lot",
    )  # fmt: skip


@dataclass(frozen=True)
class Entry:
    lot_id: str
    material_id: str
    cursor: str


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    has_next_page: bool
    total: int


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{offset}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if text.startswith(_PREFIX) and (offset := int(text[len(_PREFIX) :])) >= 0:
            return offset
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise BadUserInput(f"'{cursor}' is not a cursor this list gave out", argument="after")


def _offset(first: int, after: str | None, max_first: int) -> int:
    if not 1 <= first <= max_first:
        raise BadUserInput(f"first must be between 1 and {max_first}", argument="first")
    return decode_cursor(after) + 1 if after else 0


def _page(found: list[tuple[str, str]], offset: int, total: int) -> Page:
    entries = [
        Entry(lot_id=lot_id, material_id=material_id, cursor=encode_cursor(offset + index))
        for index, (lot_id, material_id) in enumerate(found)
    ]
    return Page(entries=entries, has_next_page=offset + len(entries) < total, total=total)


async def divergent_page(divergent: DivergentLots, where: LotFilter, first: int, after: str | None,
                         max_first: int) -> Page:  # fmt: skip
    """The divergent lots matching `where` (already narrowed to what the caller reads), as a page of `lots`."""
    if where.consistent is not False:
        raise BadUserInput("consistent: true is not a list lotgraph keeps; ask for consistent: false (the divergent "
                           "lots) or leave it out", argument="filter")  # fmt: skip
    offset = _offset(first, after, max_first)
    rows, total = await divergent.page(
        DivergenceFilter(plants=where.plants, material=where.material, supplier=where.supplier,
                         quality_status=where.quality_status.value if where.quality_status else None),
        limit=first, offset=offset,
    )  # fmt: skip
    return _page([(row.lot_id, row.material) for row in rows], offset, total)


async def page(
    upstream: Upstream, loaders: Loaders, where: LotFilter, first: int, after: str | None, max_first: int
) -> Page:
    offset = _offset(first, after, max_first)
    if where.quality_status is None:
        batches: list[LotPage] = await upstream.call(
            "erp",
            "batch.list",
            BatchQuery(
                plants=tuple(sorted(where.plants)),
                material=where.material,
                supplier=where.supplier,
                top=first,
                skip=offset,
            ),
        )
        total = batches[0].total
        for lot in batches[0].lots:
            loaders.batch.prime(lot.id, lot)
        found = [(lot.id, lot.material_id) for lot in batches[0].lots]
    else:
        qualities: list[LotQualityPage] = await upstream.call(
            "qms",
            "lot_quality.list",
            LotStatusQuery(
                status=where.quality_status,
                plants=tuple(sorted(where.plants)),
                material=where.material,
                supplier=where.supplier,
                limit=first,
                offset=offset,
            ),
        )
        total = qualities[0].total
        for quality in qualities[0].lots:
            loaders.lot_quality.prime(quality.lot_id, quality)
        found = [(quality.lot_id, quality.material_id) for quality in qualities[0].lots]
    return _page(found, offset, total)
