"""Divergent lots: lots whose systems disagree, as reconciliation found them, with the kinds of disagreement, what
each system said, when it was first and last seen and, once the systems agree again, when it was resolved.

A lot has at most one open entry (a partial unique index says so). Finding it divergent again updates that entry
(its kinds, statements and `last_seen`); finding it consistent resolves it, and the entry stays as the record of
how long the divergence lasted, until its plant's retention has passed (`forget_resolved`). The plant, material
and supplier are kept beside it, so the lists filter and narrow to what a caller may read in SQL, never asking the
plant's systems.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.errors import StoreConflict
from gateway.store.engine import serialized
from gateway.store.tables import divergent_lots, joined, record, split_joined, utc

_LOCK_ID = 0x6C6F7464  # "lotd": writers of divergent lots
# The age of an open divergence, in the bounded buckets its metric uses: (label, up to this age).
AGES: tuple[tuple[str, timedelta | None], ...] = (
    ("<5m", timedelta(minutes=5)), ("<1h", timedelta(hours=1)), ("<1d", timedelta(days=1)), (">=1d", None),
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """A lot found divergent now: where it belongs (from the ERP batch) and what its systems say."""

    lot_id: str
    plant: str
    material: str
    supplier: str | None
    quality_status: str | None
    kinds: tuple[str, ...]
    statements: Mapping[str, Any]


@dataclass(frozen=True)
class DivergentLot:
    id: int
    lot_id: str
    plant: str
    material: str
    supplier: str | None
    quality_status: str | None
    kinds: tuple[str, ...]
    statements: Mapping[str, Any]
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None

    @property
    def divergent_for(self) -> timedelta:
        return (self.resolved_at or datetime.now(UTC)) - self.first_seen


@dataclass(frozen=True)
class Readable:
    """The lots a caller may read, in the terms rows carry (`gateway/authz.ReadScope`)."""

    all_plants: bool
    plants: frozenset[str]
    supplier: str | None


@dataclass(frozen=True)
class DivergenceFilter:
    readable: Readable | None = None  # None: every row
    plants: frozenset[str] = frozenset()  # any of these; empty: every plant
    kind: str | None = None
    older_than: timedelta | None = None
    material: str | None = None
    supplier: str | None = None
    quality_status: str | None = None


@dataclass(frozen=True)
class Recorded:
    opened: list[DivergentLot]  # lots newly divergent
    resolved: list[DivergentLot]  # lots whose systems agree again


class DivergentLots:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, found: Sequence[Finding], consistent: Iterable[str]) -> Recorded:
        """Open or update an entry for each lot `found` divergent, resolve the open entries of `consistent` lots."""
        agreeing = list(consistent)
        for attempt in range(3):
            try:
                # Read-then-write: on SQLite a plain transaction could not write once another committed after its
                # read (WAL's snapshot), so it takes the write lock at BEGIN; on PostgreSQL writers take turns.
                async with serialized(self.engine, _LOCK_ID) as conn:
                    return await self._record(conn, found, agreeing)
            except StoreConflict:  # another writer (a re-check, a replica) opened one of these lots meanwhile
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _record(self, conn: AsyncConnection, found: Sequence[Finding], agreeing: list[str]) -> Recorded:
        now = datetime.now(UTC)
        lots = [finding.lot_id for finding in found] + agreeing
        query = select(divergent_lots).where(divergent_lots.c.lot_id.in_(lots), _open())
        existing = {row["lot_id"]: _entry(row) for row in (await conn.execute(query)).mappings()} if lots else {}
        fresh = [finding for finding in found if finding.lot_id not in existing]
        for finding in found:
            if finding.lot_id in existing:
                await conn.execute(
                    update(divergent_lots)
                    .where(divergent_lots.c.id == existing[finding.lot_id].id)
                    .values(**_columns(finding), last_seen=now)
                )
        if fresh:
            await conn.execute(
                divergent_lots.insert(), [{**_columns(f), "first_seen": now, "last_seen": now} for f in fresh]
            )
        resolved = [existing[lot] for lot in agreeing if lot in existing]
        if resolved:
            await conn.execute(
                update(divergent_lots)
                .where(divergent_lots.c.id.in_([entry.id for entry in resolved]))
                .values(resolved_at=now)
            )
        opened = await self._open_of(conn, [finding.lot_id for finding in fresh])
        return Recorded(opened, [_replace_resolved(entry, now) for entry in resolved])

    async def _open_of(self, conn: AsyncConnection, lot_ids: list[str]) -> list[DivergentLot]:
        if not lot_ids:
            return []
        query = select(divergent_lots).where(divergent_lots.c.lot_id.in_(lot_ids), _open())
        return [_entry(row) for row in (await conn.execute(query)).mappings()]

    async def forget_resolved(self, plant: str, older_than: timedelta) -> int:
        """Delete `plant`'s entries resolved more than `older_than` ago; how many went. Open entries stay."""
        cutoff = datetime.now(UTC) - older_than
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                delete(divergent_lots).where(divergent_lots.c.plant == plant, divergent_lots.c.resolved_at < cutoff)
            )
        return gone.rowcount

    async def open_among(self, lot_ids: Collection[str]) -> set[str]:
        """Which of `lot_ids` have an open entry (an index look-up: the cheap test before re-checking a lot)."""
        if not lot_ids:
            return set()
        query = select(divergent_lots.c.lot_id).where(divergent_lots.c.lot_id.in_(list(lot_ids)), _open())
        async with self.engine.connect() as conn:
            return set((await conn.execute(query)).scalars())

    async def get(self, lot_id: str) -> DivergentLot | None:
        """The lot's open entry, or None."""
        async with self.engine.connect() as conn:
            query = select(divergent_lots).where(divergent_lots.c.lot_id == lot_id, _open())
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _entry(row)

    async def page(
        self, where: DivergenceFilter, *, limit: int, after: int = 0, offset: int = 0
    ) -> tuple[list[DivergentLot], int]:
        """Open entries matching `where`, oldest first (after entry id `after`, skipping `offset`), and how many
        match in all."""
        condition = _matching(where)
        query = (
            select(divergent_lots)
            .where(condition, divergent_lots.c.id > after)
            .order_by(divergent_lots.c.id)
            .offset(offset)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = [_entry(row) for row in (await conn.execute(query)).mappings()]
            total = (await conn.execute(select(func.count()).select_from(divergent_lots).where(condition))).scalar_one()
        return rows, total

    async def open_by_plant_kind_and_age(self) -> Counter[tuple[str, str, str]]:
        """Open entries counted by (plant, kind, age bucket): a lot of several kinds counts under each."""
        now = datetime.now(UTC)
        age = case(
            *((divergent_lots.c.first_seen > now - limit, label) for label, limit in AGES if limit is not None),
            else_=AGES[-1][0],
        )
        query = (
            select(divergent_lots.c.plant, divergent_lots.c.kinds, age, func.count())
            .where(_open())
            .group_by(divergent_lots.c.plant, divergent_lots.c.kinds, age)
        )
        counted: Counter[tuple[str, str, str]] = Counter()
        async with self.engine.connect() as conn:
            for plant, kinds, bucket, n in (await conn.execute(query)).all():
                for kind in split_joined(kinds) or ():
                    counted[plant, kind, bucket] += n
        return counted


def _open() -> ColumnElement[bool]:
    return divergent_lots.c.resolved_at.is_(None)


def _matching(where: DivergenceFilter) -> ColumnElement[bool]:
    c = divergent_lots.c
    conditions: list[ColumnElement[bool]] = [_open()]
    if (readable := where.readable) is not None and not readable.all_plants:
        grants = [*([c.plant.in_(sorted(readable.plants))] if readable.plants else []),
                  *([c.supplier == readable.supplier] if readable.supplier else [])]  # fmt: skip
        conditions.append(or_(*grants) if grants else false())
    if where.plants:
        conditions.append(c.plant.in_(sorted(where.plants)))
    if where.kind is not None:
        conditions.append(c.kinds.contains(joined([where.kind]), autoescape=True))
    if where.older_than is not None:
        conditions.append(c.first_seen <= datetime.now(UTC) - where.older_than)
    for column, value in ((c.material, where.material), (c.supplier, where.supplier),
                          (c.quality_status, where.quality_status)):  # fmt: skip
        if value is not None:
            conditions.append(column == value)
    return and_(*conditions)


def _columns(finding: Finding) -> dict[str, Any]:
    return {
        "lot_id": finding.lot_id, "plant": finding.plant, "material": finding.material,
        "supplier": finding.supplier, "quality_status": finding.quality_status, "kinds": joined(finding.kinds),
        "statements": dict(finding.statements),
    }  # fmt: skip


def _entry(row: Mapping[str, Any]) -> DivergentLot:
    resolved = row["resolved_at"]
    return record(
        DivergentLot, row, kinds=split_joined(row["kinds"]) or (), first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]), resolved_at=utc(resolved) if resolved else None,
    )  # fmt: skip


def _replace_resolved(entry: DivergentLot, at: datetime) -> DivergentLot:
    return DivergentLot(**{**vars(entry), "resolved_at": at})
