"""The gateway's durable state (SQLAlchemy Core, async): SQLite under the data directory by default,
PostgreSQL when `LOTGRAPH_STORE_URL` names one, so replicas share it."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.audit import AuditEntry, AuditLog, Verification
from gateway.store.cursors import IngestCursors
from gateway.store.engine import migrate, open_engine

__all__ = ["AuditEntry", "AuditLog", "Store", "Verification"]


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.audit = AuditLog(engine)
        self.cursors = IngestCursors(engine)

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate to the latest schema."""
        engine = open_engine(url)
        await migrate(engine)
        return cls(engine)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def aclose(self) -> None:
        await self.engine.dispose()
