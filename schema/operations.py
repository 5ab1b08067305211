"""Operations as the graph shows them: state, every system's step, and the electronic signature."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from gateway.store import operations as store

OperationState = strawberry.enum(
    store.OperationState,
    description="PENDING operations are retried until done; BLOCKED ones (refused before they started) and FAILED "
    "ones (a system refused a step for good) wait for a person: retryOperation, abandonOperation.",
)
StepState = strawberry.enum(store.StepState)


@strawberry.type(description="One system's part of an operation for one lot.")
class OperationStep:
    seq: int
    system: str
    lot_id: str
    action: str
    state: StepState
    attempts: int
    last_error: str | None
    contract: str | None = strawberry.field(description="The versioned contract the step used.")
    detail: JSON | None = strawberry.field(description="What the step found before and left after.")


@strawberry.type(description="An electronic signature (21 CFR Part 11 §11.50): who signed, when, and what it means.")
class Signature:
    signer_name: str
    signer_id: str
    signed_at: datetime
    meaning: str


@strawberry.type(description="A hold, release or recall executed across QMS, WMS and ERP.")
class Operation:
    id: strawberry.ID
    kind: str
    state: OperationState
    actor: str
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    error: str | None
    steps: list[OperationStep]
    signature: Signature | None

    @strawberry.field(description="Lots this operation concerns.")
    def lot_ids(self) -> list[str]:
        return list(dict.fromkeys(step.lot_id for step in self.steps))

    @classmethod
    def of(cls, op: store.Operation) -> Operation:
        signed = op.input.get("signature")
        return cls(
            id=strawberry.ID(op.id),
            kind=op.kind,
            state=op.state,
            actor=op.actor,
            idempotency_key=op.idempotency_key,
            created_at=op.created_at,
            updated_at=op.updated_at,
            error=op.error,
            steps=[
                OperationStep(
                    seq=s.seq,
                    system=s.system.upper(),
                    lot_id=s.lot_id,
                    action=s.action,
                    state=s.state,
                    attempts=s.attempts,
                    last_error=s.last_error,
                    contract=s.contract,
                    detail=s.detail,
                )
                for s in op.steps
            ],
            signature=None
            if not signed
            else Signature(
                signer_name=signed["signerName"],
                signer_id=signed["signerId"],
                signed_at=datetime.fromisoformat(signed["signedAt"]),
                meaning=signed["meaning"],
            ),
        )
