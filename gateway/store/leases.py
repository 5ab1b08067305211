"""Leases: how replicas sharing the store never do the same work at once.

Two kinds. Row leases (`claim`, `end`): a worker takes due rows (the inbox's events, the outbox's deliveries) under
a lease; a row is free when no live lease covers it; the candidates are taken by one conditional UPDATE, so two
replicas never both win one, and a crashed holder's claim simply runs out. An outcome is recorded only by the lease's
holder (a run that outlived its lease writes nothing over its successor's) and gives the lease back. Named leases
(`Leases`): a job only one replica may do at a time (the reconciliation sweeper), short and renewed while held, so a
crashed holder's lease runs out within seconds and another replica takes the job over.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import StoreConflict
from gateway.store.tables import leases


async def claim(
    engine: AsyncEngine, table: Table, due: ColumnElement[bool], order: Any, owner: str, seconds: float, limit: int
) -> list[Mapping[str, Any]]:
    """Up to `limit` rows matching `due` that no live lease covers, leased to `owner` for `seconds`, in `order`.
    The candidates are read, then taken in one conditional UPDATE ... RETURNING: a row another replica took
    meanwhile no longer matches it (PostgreSQL re-checks the condition once the other's lock is released)."""
    now = datetime.now(UTC)
    free = or_(table.c.lease_until.is_(None), table.c.lease_until < now)
    query = select(table.c.id).where(due, free).order_by(order).limit(limit)
    async with engine.connect() as conn:
        candidates = list((await conn.execute(query)).scalars())
    if not candidates:
        return []
    async with engine.begin() as conn:
        won = await conn.execute(
            update(table)
            .where(table.c.id.in_(candidates), due, free)
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
            .returning(*table.c)
        )
        claimed = {row["id"]: row for row in won.mappings()}
    return [claimed[row_id] for row_id in candidates if row_id in claimed]


async def end(
    engine: AsyncEngine, table: Table, runs: Collection[tuple[str, str]], **values: Any
) -> set[tuple[str, str]]:
    """Record runs' outcome (`values`) and give their leases back, for each run (row id, lease holder) whose holder
    still holds the lease: the runs ended. Runs that ended alike take one statement per holder."""
    by_owner: dict[str, list[str]] = {}
    for row_id, owner in runs:
        by_owner.setdefault(owner, []).append(row_id)
    ended: set[tuple[str, str]] = set()
    async with engine.begin() as conn:
        for owner, row_ids in by_owner.items():
            done = await conn.execute(
                update(table)
                .where(table.c.id.in_(row_ids), table.c.lease_owner == owner)
                .values(**values, lease_owner=None, lease_until=None, updated_at=datetime.now(UTC))
                .returning(table.c.id)
            )
            ended.update((row_id, owner) for row_id in done.scalars())
    return ended


class Leases:
    """Named leases, one row per job."""

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
