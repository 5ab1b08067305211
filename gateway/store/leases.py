"""Claiming due rows under a lease: how a worker of one replica takes work that replicas sharing the store must
never do twice at once (the inbox's events, the outbox's deliveries).

A row is free when no live lease covers it; each candidate is taken by a conditional UPDATE, so two replicas
never both win one, and a crashed holder's claim simply runs out. An outcome is recorded only by the lease's
holder (a run that outlived its lease writes nothing over its successor's) and gives the lease back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine


async def claim(
    engine: AsyncEngine, table: Table, due: ColumnElement[bool], order: Any, owner: str, seconds: float, limit: int
) -> list[Mapping[str, Any]]:
    """Up to `limit` rows matching `due` that no live lease covers, leased to `owner` for `seconds`, in `order`."""
    now = datetime.now(UTC)
    free = or_(table.c.lease_until.is_(None), table.c.lease_until < now)
    async with engine.connect() as conn:
        candidates = (await conn.execute(select(table.c.id).where(due, free).order_by(order).limit(limit))).scalars()
        candidates = list(candidates)
    claimed = []
    for row_id in candidates:
        async with engine.begin() as conn:
            won = await conn.execute(
                update(table)
                .where(table.c.id == row_id, due, free)
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
            )
            if won.rowcount == 1:
                claimed.append((await conn.execute(select(table).where(table.c.id == row_id))).mappings().one())
    return claimed


async def end(engine: AsyncEngine, table: Table, row_id: str, owner: str, **values: Any) -> bool:
    """Record a run's outcome (`values`) and give the lease back, if `owner` still holds it."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(table)
            .where(table.c.id == row_id, table.c.lease_owner == owner)
            .values(**values, lease_owner=None, lease_until=None, updated_at=datetime.now(UTC))
        )
    return done.rowcount == 1
