"""The outbox: outbound notifications, one delivery per (target, event), stored before anything is sent.

`add` is idempotent by (target, event id), so an event whose reactions run again (a redelivery, a retry after a
crash) makes no second notification. The delivery worker (`gateway/notifications/worker.py`) claims due PENDING
deliveries under a lease (`gateway/store/leases.py`: replicas never send one delivery at once) and records each
try: DELIVERED, due again later with its error, or PARKED once the tries are spent (with an exception entry).
A person's `retryException` makes a PARKED delivery PENDING again with fresh tries; `discardException` ends it
DISCARDED.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store import leases
from gateway.store.exceptions import UNKNOWN_PLANT
from gateway.store.groups import GroupCommit, insert_new
from gateway.store.tables import deliveries, joined, record, split_joined, utc


class DeliveryState(StrEnum):
    PENDING = "PENDING"  # to be sent (now, or when `due_at` comes)
    DELIVERED = "DELIVERED"
    PARKED = "PARKED"  # tries spent: in the exception queue
    DISCARDED = "DISCARDED"  # a person gave it up


UNDELIVERED = (DeliveryState.PENDING, DeliveryState.PARKED)


@dataclass(frozen=True)
class Delivery:
    id: str
    target: str
    event_id: str
    event_type: str
    plants: tuple[str, ...]
    lot_id: str | None
    correlation_id: str | None
    body: Mapping[str, Any]  # what is POSTed, as JSON
    state: DeliveryState
    attempts: int
    last_error: str | None
    due_at: datetime


class Outbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._additions = GroupCommit(lambda rows: insert_new(engine, deliveries, rows, key=("target", "event_id")))
        self._deliveries_done = GroupCommit(self._mark_delivered)

    async def add(
        self, delivery_id: str, target: str, event_id: str, event_type: str, *, plants: Iterable[str],
        lot_id: str | None, correlation_id: str | None, body: Mapping[str, Any],
    ) -> bool:  # fmt: skip
        """Store a delivery, due now; False when the target already has one for this event. Deliveries added
        together share one transaction (`groups.py`); each returns once its own is committed."""
        now = datetime.now(UTC)
        return await self._additions.submit(dict(
            id=delivery_id, target=target, event_id=event_id, event_type=event_type,
            plants=joined(set(plants) or {UNKNOWN_PLANT}), lot_id=lot_id, correlation_id=correlation_id,
            body=dict(body), state=DeliveryState.PENDING.value, attempts=0, due_at=now, created_at=now, updated_at=now,
        ))  # fmt: skip

    async def claim(self, owner: str, seconds: float, limit: int, targets: Collection[str]) -> list[Delivery]:
        """Due PENDING deliveries to `targets` (the ones this process knows how to reach), leased to `owner`."""
        due = and_(
            deliveries.c.state == DeliveryState.PENDING.value,
            deliveries.c.due_at <= datetime.now(UTC),
            deliveries.c.target.in_(list(targets)),
        )
        rows = await leases.claim(self.engine, deliveries, due, deliveries.c.due_at, owner, seconds, limit)
        return [_delivery(row) for row in rows]

    async def delivered(self, delivery_id: str, owner: str) -> bool:
        """DELIVERED; False if `owner`'s lease had run out. Deliveries ending together share one statement."""
        return await self._deliveries_done.submit((delivery_id, owner))

    async def _mark_delivered(self, tries: list[tuple[str, str]]) -> list[bool]:
        ended = await self._tried(tries, state=DeliveryState.DELIVERED.value, last_error=None)
        return [one in ended for one in tries]

    async def later(self, delivery_id: str, owner: str, error: str, delay: float) -> bool:
        due = datetime.now(UTC) + timedelta(seconds=delay)
        return bool(await self._tried([(delivery_id, owner)], last_error=error, due_at=due))

    async def park(self, delivery_id: str, owner: str, error: str) -> bool:
        return bool(await self._tried([(delivery_id, owner)], state=DeliveryState.PARKED.value, last_error=error))

    async def _tried(self, tries: list[tuple[str, str]], **values: Any) -> set[tuple[str, str]]:
        """Tries' outcome (delivery id, lease holder), counted; the tries whose holder's lease had not run out
        (another replica has the others now)."""
        return await leases.end(self.engine, deliveries, tries, attempts=deliveries.c.attempts + 1, **values)

    async def requeue(self, delivery_id: str) -> bool:
        """A PARKED delivery PENDING again, due now, with fresh tries (an operator fixed the target)."""
        return await self._move(delivery_id, DeliveryState.PARKED, state=DeliveryState.PENDING.value, attempts=0,
                                due_at=datetime.now(UTC))  # fmt: skip

    async def discard(self, delivery_id: str) -> bool:
        return await self._move(delivery_id, DeliveryState.PARKED, state=DeliveryState.DISCARDED.value)

    async def _move(self, delivery_id: str, only_from: DeliveryState, **values: Any) -> bool:
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.state == only_from.value)
                .values(**values, updated_at=datetime.now(UTC))
            )
        return moved.rowcount == 1

    async def get(self, delivery_id: str) -> Delivery | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).mappings().first()
        return None if row is None else _delivery(row)

    async def undelivered_by_target(self) -> dict[str, int]:
        """PENDING and PARKED deliveries per target that has any."""
        query = (
            select(deliveries.c.target, func.count())
            .where(deliveries.c.state.in_([state.value for state in UNDELIVERED]))
            .group_by(deliveries.c.target)
        )
        async with self.engine.connect() as conn:
            return {target: count for target, count in (await conn.execute(query)).all()}


def _delivery(row: Mapping[str, Any]) -> Delivery:
    return record(Delivery, row, state=DeliveryState(row["state"]), plants=split_joined(row["plants"]) or (),
                  due_at=utc(row["due_at"]))  # fmt: skip
