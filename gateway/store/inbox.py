"""The inbox: every inbound plant event, stored before its sender is answered, until its reactions are done.

`accept` is the acknowledgement's precondition (a webhook's 202, an MQTT PUBACK, an ERP cursor): the event id is
the key, so a redelivered event is a duplicate and has no second effect. The dispatcher (`gateway/events/
dispatcher.py`) runs each entry under a short lease (replicas sharing PostgreSQL never run one event's
reactions at once; a crashed replica's lease runs out): an entry this process took in is stored already leased
to it and handed over in memory; any other due entry (another replica's, a retry coming due, one left by a dead
process) is claimed. Each is then marked DONE, due again later (a transient failure, with backoff) or PARKED
(what retrying cannot fix, in the exception queue), and `published` with that: the dispatcher puts every entry
on the bus before its reactions run. Arrivals that come together are inserted in one transaction, and so are DONE
outcomes (`gateway/store/groups.py`): each caller still returns only once its own row is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store import leases
from gateway.store.groups import GroupCommit, insert_new
from gateway.store.tables import inbox


class InboxState(StrEnum):
    PENDING = "PENDING"  # its reactions are still to run (now, or when `due_at` comes)
    DONE = "DONE"
    PARKED = "PARKED"  # in the exception queue; `retryException` makes it PENDING again


@dataclass(frozen=True)
class InboxEntry:
    id: str
    event: dict[str, Any]  # the canonical Event as JSON
    published: bool
    attempts: int
    last_error: str | None


class Inbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Concurrent arrivals share one transaction, and so do the dispatcher's DONE outcomes (`groups.py`).
        self._arrivals = GroupCommit(lambda rows: insert_new(engine, inbox, rows, key=("id",)))
        self._finished = GroupCommit(self._mark_done)

    async def accept(
        self, event_id: str, event_type: str, source: str, event: dict[str, Any], *, owner: str, seconds: float
    ) -> InboxEntry | None:
        """Store the event, leased to `owner` for `seconds` (it runs the reactions: no claim needed); None when its
        id is already here (a redelivery: answer it as a duplicate). Returns once the row is committed."""
        now = datetime.now(UTC)
        row = dict(
            id=event_id, type=event_type, source=source, event=event, state=InboxState.PENDING.value, published=False,
            attempts=0, due_at=now, received_at=now, updated_at=now, lease_owner=owner,
            lease_until=now + timedelta(seconds=seconds),
        )  # fmt: skip
        if not await self._arrivals.submit(row):
            return None
        return InboxEntry(event_id, event, published=False, attempts=0, last_error=None)

    async def claim(self, owner: str, seconds: float, limit: int) -> list[InboxEntry]:
        """Due PENDING entries, leased to `owner` (`gateway/store/leases.py`), oldest first."""
        due = and_(inbox.c.state == InboxState.PENDING.value, inbox.c.due_at <= datetime.now(UTC))
        rows = await leases.claim(self.engine, inbox, due, inbox.c.received_at, owner, seconds, limit)
        return [InboxEntry(r["id"], r["event"], r["published"], r["attempts"], r["last_error"]) for r in rows]

    async def renew(self, event_id: str, owner: str, seconds: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(inbox)
                .where(inbox.c.id == event_id, inbox.c.lease_owner == owner)
                .values(lease_until=datetime.now(UTC) + timedelta(seconds=seconds))
            )

    async def done(self, event_id: str, owner: str) -> None:
        await self._finished.submit((event_id, owner))

    async def _mark_done(self, runs: list[tuple[str, str]]) -> list[None]:
        await self._end(runs, state=InboxState.DONE, last_error=None)
        return [None] * len(runs)

    async def park(self, event_id: str, owner: str, error: str) -> None:
        await self._end([(event_id, owner)], state=InboxState.PARKED, attempts=inbox.c.attempts + 1, last_error=error)

    async def later(self, event_id: str, owner: str, error: str, delay: float) -> None:
        """A transient failure: counted, kept, and due again after `delay` seconds."""
        due = datetime.now(UTC) + timedelta(seconds=delay)
        await self._end([(event_id, owner)], attempts=inbox.c.attempts + 1, last_error=error, due_at=due)

    async def _end(self, runs: list[tuple[str, str]], **values: Any) -> None:
        """The runs' outcome (entry id, lease holder); the dispatcher published each entry before its reactions."""
        values = {key: value.value if isinstance(value, InboxState) else value for key, value in values.items()}
        await leases.end(self.engine, inbox, runs, published=True, **values)

    async def requeue(self, event_id: str) -> bool:
        """A PARKED event PENDING again, due now, its attempts counted afresh (an operator fixed the cause)."""
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                update(inbox)
                .where(inbox.c.id == event_id, inbox.c.state == InboxState.PARKED.value)
                .values(state=InboxState.PENDING.value, attempts=0, due_at=datetime.now(UTC),
                        updated_at=datetime.now(UTC))
            )  # fmt: skip
        return changed.rowcount == 1

    async def count_pending(self) -> int:
        query = select(func.count()).select_from(inbox).where(inbox.c.state == InboxState.PENDING.value)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()

    async def prune(self, older_than: timedelta) -> int:
        """Forget DONE entries older than `older_than` (their ids are then no longer deduplicated here)."""
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                delete(inbox).where(
                    inbox.c.state == InboxState.DONE.value, inbox.c.updated_at < datetime.now(UTC) - older_than
                )
            )
        return gone.rowcount
