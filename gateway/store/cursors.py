"""Ingest cursors: how far each polled change feed has been read (one row per source)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import StoreConflict
from gateway.store.tables import ingest_cursors


class IngestCursors:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, source: str) -> str | None:
        async with self.engine.connect() as conn:
            query = select(ingest_cursors.c.cursor).where(ingest_cursors.c.source == source)
            return (await conn.execute(query)).scalar_one_or_none()

    async def put(self, source: str, cursor: str) -> None:
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                update(ingest_cursors).where(ingest_cursors.c.source == source).values(cursor=cursor, updated_at=now)
            )
            if changed.rowcount:
                return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(ingest_cursors.insert().values(source=source, cursor=cursor, updated_at=now))
        except StoreConflict:  # another replica wrote the first row meanwhile
            await self.put(source, cursor)
