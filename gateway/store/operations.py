"""Durable operations: what a mutation set out to do across systems, and each step's progress.

An operation is written before its first upstream call and every step's outcome right after it, so a
gateway killed mid-operation finds, on restart, exactly which steps are left. The unique
(actor, idempotency key) pair makes duplicates, concurrent or not, find the first operation instead of
starting a second one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import GatewayError, StoreConflict
from gateway.store.tables import lot_leases, operation_steps, operations, record, utc


class OperationState(StrEnum):
    PENDING = "PENDING"  # steps are left; the resumer keeps trying
    BLOCKED = "BLOCKED"  # never started: Cedar refused a workflow's operation (e.g. it waits for a qualified person)
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"  # a system refused a step for good: retrying the same request cannot help; a person decides
    ABANDONED = "ABANDONED"


NEEDS_ATTENTION = (OperationState.PENDING, OperationState.BLOCKED, OperationState.FAILED)


class StepState(StrEnum):
    PENDING = "PENDING"
    DONE = "DONE"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"  # refused for good (UPSTREAM_REJECTED, CONTRACT_VIOLATION); `retryOperation` runs it again


class IdempotencyConflict(GatewayError):
    code = "IDEMPOTENCY_CONFLICT"


@dataclass(frozen=True)
class StepPlan:
    system: str
    lot_id: str
    action: str


@dataclass
class Step:
    seq: int
    system: str
    lot_id: str
    action: str
    state: StepState
    attempts: int
    last_error: str | None
    contract: str | None
    detail: Mapping[str, Any] | None


@dataclass(frozen=True)
class StepRecord:
    """What a run of a step left: its new state, and the error, or the contract used and what it did."""

    seq: int
    state: StepState
    error: str | None = None
    contract: str | None = None
    detail: Mapping[str, Any] | None = None


@dataclass
class Operation:
    id: str
    kind: str
    actor: str
    idempotency_key: str
    input: Mapping[str, Any]
    state: OperationState
    result: Mapping[str, Any] | None
    error: str | None
    correlation_id: str | None
    created_at: datetime
    updated_at: datetime
    steps: list[Step] = field(default_factory=list)


LEASE_CHUNK = 500  # lots per statement: far below every database's limit on bound parameters


def request_hash(kind: str, payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"kind": kind, **payload}, sort_keys=True, default=str).encode()).hexdigest()


class OperationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def claim(
        self,
        *,
        kind: str,
        actor: str,
        idempotency_key: str,
        payload: Mapping[str, Any],
        steps: Sequence[StepPlan],
        correlation_id: str | None,
        extra: Mapping[str, Any] | None = None,
        blocked: str | None = None,
    ) -> tuple[Operation, bool]:
        """Record a new operation, or return the one this key already started (`created` False).

        The same key with a different request is refused: silently answering with another request's
        result would be worse than an error. `extra` is stored with the input (e.g. an electronic
        signature) but is not part of what makes two requests the same. With `blocked` (why), the operation
        is recorded BLOCKED: visible, never run.
        """
        digest = request_hash(kind, payload)
        now = datetime.now(UTC)
        op_id = str(uuid.uuid4())
        row = {"id": op_id, "kind": kind, "actor": actor, "idempotency_key": idempotency_key, "request_hash": digest,
               "input": json.loads(json.dumps({**payload, **(extra or {})}, default=str)),
               "state": (OperationState.PENDING if blocked is None else OperationState.BLOCKED).value,
               "error": blocked, "correlation_id": correlation_id, "created_at": now, "updated_at": now}  # fmt: skip
        step_rows = [
            {"operation_id": op_id, "seq": seq, "system": s.system, "lot_id": s.lot_id, "action": s.action,
             "state": StepState.PENDING.value, "attempts": 0, "updated_at": now}
            for seq, s in enumerate(steps, start=1)
        ]  # fmt: skip
        try:
            async with self.engine.begin() as conn:
                await conn.execute(operations.insert().values(**row))
                if step_rows:
                    await conn.execute(operation_steps.insert(), step_rows)
        except StoreConflict:
            existing = await self.by_key(actor, idempotency_key)
            if existing is None:
                raise
            stored_hash = await self._hash(existing.id)
            if stored_hash != digest:
                raise IdempotencyConflict(
                    f"idempotency key '{idempotency_key}' was already used for a different request",
                    operationId=existing.id,
                ) from None
            return existing, False
        # as stored, without reading back a recall's tens of thousands of steps
        absent = {"result": None, "last_error": None, "contract": None, "detail": None}
        return _operation({**absent, **row}, [_step({**absent, **step}) for step in step_rows]), True

    async def _hash(self, op_id: str) -> str:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(operations.c.request_hash).where(operations.c.id == op_id))).scalar_one()

    async def by_key(self, actor: str, idempotency_key: str) -> Operation | None:
        query = select(operations.c.id).where(
            operations.c.actor == actor, operations.c.idempotency_key == idempotency_key
        )
        async with self.engine.connect() as conn:
            op_id = (await conn.execute(query)).scalar_one_or_none()
        return await self.get(op_id) if op_id else None

    async def get(self, op_id: str) -> Operation | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(operations).where(operations.c.id == op_id))).mappings().first()
            if row is None:
                return None
            steps = (
                await conn.execute(
                    select(operation_steps)
                    .where(operation_steps.c.operation_id == op_id)
                    .order_by(operation_steps.c.seq)
                )
            ).mappings()
            return _operation(row, [_step(s) for s in steps])

    async def needing_attention(self) -> dict[tuple[str, OperationState], tuple[int, datetime]]:
        """Operations PENDING, BLOCKED or FAILED by kind and state: how many, and the oldest one's start."""
        state = operations.c.state
        query = (
            select(operations.c.kind, state, func.count(), func.min(operations.c.created_at))
            .where(state.in_([s.value for s in NEEDS_ATTENTION]))
            .group_by(operations.c.kind, state)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {(kind, OperationState(value)): (count, utc(oldest)) for kind, value, count, oldest in rows}

    async def lots_by_plant(
        self, kinds: Sequence[str], state: OperationState, *, unless_event: str | None = None
    ) -> dict[str, tuple[int, datetime]]:
        """Per plant (of the workflow event behind them): how many lots operations of these kinds in this state
        concern, and the oldest such operation's start; `unless_event`: leaving out lots that any operation started
        by an event of that type has concerned since."""
        plant = operations.c.input["plant"].as_string()
        query = (
            select(plant, func.count(operation_steps.c.lot_id.distinct()), func.min(operations.c.created_at))
            .join(operation_steps, operation_steps.c.operation_id == operations.c.id)
            .where(operations.c.kind.in_(list(kinds)), operations.c.state == state.value)
            .group_by(plant)
        )
        if unless_event is not None:
            later, later_steps = operations.alias("later"), operation_steps.alias("later_steps")
            query = query.where(
                ~select(later.c.id)
                .join(later_steps, later_steps.c.operation_id == later.c.id)
                .where(later_steps.c.lot_id == operation_steps.c.lot_id,
                       later.c.input["eventType"].as_string() == unless_event)
                .exists()
            )  # fmt: skip
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {name or "unknown": (count, utc(oldest)) for name, count, oldest in rows}

    async def first_on_lot(self, kinds: Sequence[str], lot_id: str) -> Operation | None:
        """The first operation of these kinds on `lot_id` (e.g. the workflow that received the lot)."""
        query = (
            select(operations.c.id)
            .join(operation_steps, operation_steps.c.operation_id == operations.c.id)
            .where(operations.c.kind.in_(list(kinds)), operation_steps.c.lot_id == lot_id)
            .order_by(operations.c.created_at)
            .limit(1)
        )
        async with self.engine.connect() as conn:
            op_id = (await conn.execute(query)).scalar_one_or_none()
        return None if op_id is None else await self.get(op_id)

    async def in_state(self, *states: OperationState) -> list[Operation]:
        return [op for op in [await self.get(i) for i in await self.ids_in_state(*states)] if op is not None]

    async def ids_in_state(self, *states: OperationState) -> list[str]:
        """Oldest first; without their steps (a recall's are tens of thousands of rows)."""
        query = select(operations.c.id).where(operations.c.state.in_([s.value for s in states]))
        async with self.engine.connect() as conn:
            return list((await conn.execute(query.order_by(operations.c.created_at))).scalars().all())

    async def state(self, op_id: str) -> OperationState | None:
        """The operation's state alone (polled while waiting: cheaper than the operation with its steps)."""
        async with self.engine.connect() as conn:
            found = (await conn.execute(select(operations.c.state).where(operations.c.id == op_id))).scalar()
        return None if found is None else OperationState(found)

    async def steps_in_state(self, op_id: str, state: StepState) -> list[Step]:
        query = (
            select(operation_steps)
            .where(operation_steps.c.operation_id == op_id, operation_steps.c.state == state.value)
            .order_by(operation_steps.c.seq)
        )
        async with self.engine.connect() as conn:
            return [_step(row) for row in (await conn.execute(query)).mappings()]

    async def blocked_on_lot(self, kinds: Sequence[str], lot_id: str) -> list[str]:
        """Ids of BLOCKED operations of these kinds that would have changed `lot_id`."""
        query = (
            select(operations.c.id)
            .distinct()
            .join(operation_steps, operation_steps.c.operation_id == operations.c.id)
            .where(operations.c.state == OperationState.BLOCKED.value, operations.c.kind.in_(list(kinds)),
                   operation_steps.c.lot_id == lot_id)
        )  # fmt: skip
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars().all())

    async def acquire(self, op_id: str, owner: str, seconds: float) -> bool:
        """Take (or extend) the right to run the operation; False while another runner holds it."""
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(operations)
                .where(
                    operations.c.id == op_id,
                    or_(
                        operations.c.lease_until.is_(None),
                        operations.c.lease_until < now,
                        operations.c.lease_owner == owner,
                    ),
                )
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
            )
        return result.rowcount == 1

    async def release(self, op_id: str, owner: str, *, lots: bool = False) -> None:
        """Give the run's lease back, and with `lots` its lots' leases too (one transaction)."""
        async with self.engine.begin() as conn:
            if lots:
                await conn.execute(delete(lot_leases).where(lot_leases.c.operation_id == op_id))
            await conn.execute(
                update(operations)
                .where(operations.c.id == op_id, operations.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    async def acquire_lots(self, op_id: str, lot_ids: Sequence[str], seconds: float) -> bool:
        """Take every lot for `op_id`, or none: False while another operation holds any of them. All or
        nothing, so two operations each waiting for a lot the other holds cannot deadlock."""
        now = datetime.now(UTC)
        try:
            async with self.engine.begin() as conn:
                for start in range(0, len(lot_ids), LEASE_CHUNK):
                    chunk = lot_ids[start : start + LEASE_CHUNK]
                    await conn.execute(
                        delete(lot_leases).where(
                            lot_leases.c.lot_id.in_(chunk),
                            or_(lot_leases.c.until < now, lot_leases.c.operation_id == op_id),
                        )
                    )
                    until = now + timedelta(seconds=seconds)
                    await conn.execute(
                        lot_leases.insert(), [{"lot_id": lot, "operation_id": op_id, "until": until} for lot in chunk]
                    )
        except StoreConflict:
            return False
        return True

    async def lot_holder(self, op_id: str, lot_ids: Sequence[str]) -> tuple[str, str] | None:
        """(operation, lot): another operation's live lease on one of `lot_ids`, if any (what `op_id` waits for)."""
        now = datetime.now(UTC)
        async with self.engine.connect() as conn:
            for start in range(0, len(lot_ids), LEASE_CHUNK):
                query = select(lot_leases.c.operation_id, lot_leases.c.lot_id).where(
                    lot_leases.c.lot_id.in_(lot_ids[start : start + LEASE_CHUNK]),
                    lot_leases.c.operation_id != op_id,
                    lot_leases.c.until >= now,
                )
                if (row := (await conn.execute(query.limit(1))).first()) is not None:
                    return row.operation_id, row.lot_id
        return None

    async def note(self, op_id: str, note: str | None) -> None:
        """Say (or stop saying) why a PENDING operation is not moving, in its `error`."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(operations)
                .where(operations.c.id == op_id, operations.c.state == OperationState.PENDING.value)
                .values(error=note)
            )

    async def renew_lots(self, op_id: str, seconds: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(lot_leases)
                .where(lot_leases.c.operation_id == op_id)
                .values(until=datetime.now(UTC) + timedelta(seconds=seconds))
            )

    async def record_steps(self, op_id: str, records: Sequence[StepRecord]) -> None:
        """Steps' outcomes in one transaction (a batch of lots one request changed: one commit, not one per lot)."""
        if not records:
            return
        now = datetime.now(UTC)
        statement = (
            update(operation_steps)
            .where(operation_steps.c.operation_id == op_id, operation_steps.c.seq == bindparam("step"))
            .values(
                state=bindparam("new_state"), last_error=bindparam("error"), contract=bindparam("used"),
                detail=bindparam("outcome"), attempts=operation_steps.c.attempts + 1, updated_at=now,
            )
        )  # fmt: skip
        rows = [
            {"step": r.seq, "new_state": r.state.value, "error": r.error, "used": r.contract, "outcome": r.detail}
            for r in records
        ]  # fmt: skip
        async with self.engine.begin() as conn:
            await conn.execute(statement, rows)
            await conn.execute(update(operations).where(operations.c.id == op_id).values(updated_at=now))

    async def reopen(self, op_id: str) -> None:
        """A FAILED operation PENDING again, its failed steps with it (an operator fixed the cause and retries)."""
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(operation_steps)
                .where(operation_steps.c.operation_id == op_id, operation_steps.c.state == StepState.FAILED.value)
                .values(state=StepState.PENDING.value, updated_at=now)
            )
            await conn.execute(
                update(operations)
                .where(operations.c.id == op_id, operations.c.state == OperationState.FAILED.value)
                .values(state=OperationState.PENDING.value, error=None, updated_at=now)
            )

    async def finish(
        self, op_id: str, state: OperationState, *, result: Mapping[str, Any] | None = None, error: str | None = None
    ) -> datetime:
        """Record how the operation ended; returns when (its `updated_at`)."""
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(operations)
                .where(operations.c.id == op_id)
                .values(
                    state=state.value,
                    result=result,
                    error=error,
                    updated_at=now,
                )
            )
        return now


def _operation(row: Mapping[str, Any], steps: list[Step]) -> Operation:
    return record(
        Operation,
        row,
        state=OperationState(row["state"]),
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
        steps=steps,
    )


def _step(row: Mapping[str, Any]) -> Step:
    return record(Step, row, state=StepState(row["state"]))
