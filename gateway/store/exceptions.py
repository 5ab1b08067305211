"""The exception queue: what cannot succeed by retrying, parked with its reason until a person decides.

An entry is about one subject of one kind: an inbound event whose reactions failed for good (EVENT, subject the
event id), an operation a system refused (STEP, the operation id), or a notification past its retry budget
(NOTIFICATION, the delivery id). A subject has at most one active entry (OPEN, or RETRIED while the retry runs;
a partial unique index says so): parking it again updates that entry's reason and attempts. An entry ends
RESOLVED (the thing succeeded) or DISCARDED (a person gave it up, saying why).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import StoreConflict
from gateway.store.tables import exceptions, joined, record, split_joined, utc, within

UNKNOWN_PLANT = "?"  # an entry about nothing whose plant is known: only all-plants callers manage it


class ExceptionKind(StrEnum):
    EVENT = "EVENT"
    STEP = "STEP"
    NOTIFICATION = "NOTIFICATION"


class ExceptionState(StrEnum):
    OPEN = "OPEN"  # waiting for a person
    RETRIED = "RETRIED"  # a person asked for it to run again; it ends RESOLVED, or OPEN again if it fails
    DISCARDED = "DISCARDED"
    RESOLVED = "RESOLVED"


ACTIVE = (ExceptionState.OPEN, ExceptionState.RETRIED)


@dataclass(frozen=True)
class ExceptionEntry:
    id: int
    kind: ExceptionKind
    state: ExceptionState
    reason_code: str
    reason: str
    subject: str
    lot_id: str | None
    plants: tuple[str, ...]
    payload: Mapping[str, Any]
    attempts: int
    correlation_id: str | None
    created_at: datetime
    updated_at: datetime
    resolved_by: str | None
    resolution: str | None


def _active(kind: ExceptionKind, subject: str) -> ColumnElement[bool]:
    return and_(
        exceptions.c.kind == kind.value,
        exceptions.c.subject == subject,
        exceptions.c.state.in_([s.value for s in ACTIVE]),
    )


class ExceptionQueue:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def park(
        self, kind: ExceptionKind, subject: str, *, reason_code: str, reason: str, plants: Iterable[str],
        lot_id: str | None = None, payload: Mapping[str, Any] | None = None, attempts: int | None = None,
        correlation_id: str | None = None,
    ) -> ExceptionEntry:  # fmt: skip
        """Park `subject` (or update its active entry: OPEN again, with this reason). `attempts`: how many tries
        failed so far, if the caller counts them; otherwise each park counts one more."""
        now = datetime.now(UTC)
        body = json.loads(json.dumps(dict(payload or {}), default=str))
        changes = {"state": ExceptionState.OPEN.value, "reason_code": reason_code, "reason": reason,
                   "payload": body, "updated_at": now,
                   "attempts": attempts if attempts is not None else exceptions.c.attempts + 1}  # fmt: skip
        for _ in range(3):  # an entry resolved, or another replica's insert, between our two statements
            async with self.engine.begin() as conn:
                if (await conn.execute(update(exceptions).where(_active(kind, subject)).values(**changes))).rowcount:
                    break
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        exceptions.insert().values(
                            kind=kind.value, subject=subject, lot_id=lot_id, plants=joined(set(plants) or
                            {UNKNOWN_PLANT}), correlation_id=correlation_id, created_at=now,
                            **{**changes, "attempts": attempts if attempts is not None else 1},
                        )
                    )  # fmt: skip
                break
            except StoreConflict:
                continue
        entry = await self.active(kind, subject)
        assert entry is not None
        return entry

    async def get(self, entry_id: int) -> ExceptionEntry | None:
        return await self._one(exceptions.c.id == entry_id)

    async def active(self, kind: ExceptionKind, subject: str) -> ExceptionEntry | None:
        return await self._one(_active(kind, subject))

    async def _one(self, condition: ColumnElement[bool]) -> ExceptionEntry | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(exceptions).where(condition))).mappings().first()
        return None if row is None else _entry(row)

    async def mark(
        self, entry_id: int, state: ExceptionState, *, by: str, why: str, only_from: Collection[ExceptionState]
    ) -> bool:
        """Move the entry to `state` (who and why recorded) if it is in one of `only_from`; False if it was not."""
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                update(exceptions)
                .where(exceptions.c.id == entry_id, exceptions.c.state.in_([s.value for s in only_from]))
                .values(state=state.value, resolved_by=by, resolution=why, updated_at=datetime.now(UTC))
            )
        return changed.rowcount == 1

    async def settle(self, kind: ExceptionKind, subject: str, state: ExceptionState, *, by: str, why: str) -> None:
        """End the subject's active entry, if it has one: it succeeded (RESOLVED) or was given up (DISCARDED).
        Who asked for the retry that made it succeed stays recorded."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(exceptions)
                .where(_active(kind, subject))
                .values(state=state.value, resolved_by=func.coalesce(exceptions.c.resolved_by, by), resolution=why,
                        updated_at=datetime.now(UTC))
            )  # fmt: skip

    async def page(
        self, *, after: int, limit: int, within_plants: Collection[str] | None, kind: ExceptionKind | None = None,
        state: ExceptionState | None = None, plant: str | None = None, lot_id: str | None = None,
    ) -> tuple[list[ExceptionEntry], int]:  # fmt: skip
        """Entries after id `after`, oldest first, and how many match in all. `within_plants`: only entries whose
        plants are all among these (None: every entry)."""
        conditions: list[ColumnElement[bool]] = []
        if within_plants is not None:
            conditions.append(within(exceptions.c.plants, within_plants))
        if kind is not None:
            conditions.append(exceptions.c.kind == kind.value)
        if state is not None:
            conditions.append(exceptions.c.state == state.value)
        if plant is not None:
            conditions.append(exceptions.c.plants.contains(joined([plant]), autoescape=True))
        if lot_id is not None:
            conditions.append(exceptions.c.lot_id == lot_id)
        where = and_(true(), *conditions)
        query = select(exceptions).where(where, exceptions.c.id > after).order_by(exceptions.c.id).limit(limit)
        async with self.engine.connect() as conn:
            rows = [_entry(row) for row in (await conn.execute(query)).mappings()]
            total = (await conn.execute(select(func.count()).select_from(exceptions).where(where))).scalar_one()
        return rows, total

    async def open_by_kind(self) -> dict[ExceptionKind, int]:
        query = (
            select(exceptions.c.kind, func.count())
            .where(exceptions.c.state == ExceptionState.OPEN.value)
            .group_by(exceptions.c.kind)
        )
        async with self.engine.connect() as conn:
            counted = {ExceptionKind(kind): n for kind, n in (await conn.execute(query)).all()}
        return {kind: counted.get(kind, 0) for kind in ExceptionKind}


def _entry(row: Mapping[str, Any]) -> ExceptionEntry:
    return record(
        ExceptionEntry, row, kind=ExceptionKind(row["kind"]), state=ExceptionState(row["state"]),
        plants=split_joined(row["plants"]) or (), created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]),
    )  # fmt: skip
