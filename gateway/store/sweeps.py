"""Reconciliation sweeps: per plant, how far the current sweep has come (the last lot checked), when it started,
how many lots it has checked of how many, and when the last one completed. Written after every page, so a
restarted gateway (or the replica that takes over the sweeper's lease) carries on from the stored cursor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import StoreConflict
from gateway.store.tables import reconciliation_sweeps, record, utc


@dataclass(frozen=True)
class SweepState:
    plant: str
    cursor: str | None  # the last lot checked by the sweep under way; None: no sweep under way
    started_at: datetime | None
    checked: int  # lots checked so far by the sweep under way (or by the last one, once completed)
    total: int | None  # lots of the plant when the sweep started
    completed_at: datetime | None
    last_error: str | None

    @property
    def under_way(self) -> bool:
        return self.started_at is not None and (self.completed_at is None or self.completed_at < self.started_at)


class Sweeps:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, plant: str) -> SweepState:
        async with self.engine.connect() as conn:
            query = select(reconciliation_sweeps).where(reconciliation_sweeps.c.plant == plant)
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return SweepState(plant, None, None, 0, None, None, None)
        moments = {key: utc(row[key]) if row[key] else None for key in ("started_at", "completed_at")}
        return record(SweepState, row, **moments)

    async def plants(self) -> list[str]:
        """Every plant ever swept."""
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(reconciliation_sweeps.c.plant))).scalars())

    async def begin(self, plant: str) -> None:
        await self._put(plant, cursor=None, started_at=datetime.now(UTC), checked=0, total=None, last_error=None)

    async def advance(self, plant: str, cursor: str, checked: int, total: int) -> None:
        await self._put(plant, cursor=cursor, checked=checked, total=total, last_error=None)

    async def complete(self, plant: str, checked: int) -> None:
        await self._put(plant, cursor=None, checked=checked, total=checked, completed_at=datetime.now(UTC),
                        last_error=None)  # fmt: skip

    async def interrupted(self, plant: str, error: str) -> None:
        await self._put(plant, last_error=error)

    async def _put(self, plant: str, **values: Any) -> None:
        values["updated_at"] = datetime.now(UTC)
        table = reconciliation_sweeps
        for _ in range(2):
            async with self.engine.begin() as conn:
                if (await conn.execute(update(table).where(table.c.plant == plant).values(**values))).rowcount:
                    return
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(table.insert().values(**{"plant": plant, "checked": 0, **values}))
                return
            except StoreConflict:  # another replica wrote the first row meanwhile: update it
                continue
