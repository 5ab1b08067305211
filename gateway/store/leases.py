"""Named leases: which process holds a job that only one replica sharing the store may do at a time (the
reconciliation sweeper). Short and renewed while held, so a crashed holder's lease runs out within seconds and
another replica takes the job over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import StoreConflict
from gateway.store.tables import leases


class Leases:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def acquire(self, name: str, owner: str, seconds: float) -> bool:
        """Take (or extend) the lease `name` for `owner`; False while another owner's lease is live."""
        now = datetime.now(UTC)
        until = now + timedelta(seconds=seconds)
        async with self.engine.begin() as conn:
            taken = await conn.execute(
                update(leases)
                .where(leases.c.name == name, or_(leases.c.until < now, leases.c.owner == owner))
                .values(owner=owner, until=until)
            )
        if taken.rowcount == 1:
            return True
        try:
            async with self.engine.begin() as conn:
                await conn.execute(leases.insert().values(name=name, owner=owner, until=until))
        except StoreConflict:  # the row exists and another owner's lease is live (or it just took it)
            return False
        return True

    async def release(self, name: str, owner: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(leases).where(leases.c.name == name, leases.c.owner == owner))
