"""What operations tell the event bus: `OperationUpdated` as they progress, and the plant event each
completed operation amounts to (a hold placed, released, a disposition) for every lot it touched.

Events of operations carry the lot's plant, material and supplier (from the ERP batch, one batched read)
so subscribers are authorized for them like for any plant event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from gateway.events.envelope import Event, EventType, LotRef
from gateway.events.hub import Events
from gateway.reads import Loaders
from gateway.store.operations import Operation, OperationState
from gateway.upstream import Upstream

COMPLETED_AS: Mapping[str, EventType] = {
    "placeQualityHold": EventType.HOLD_PLACED,
    "placeRecallHold": EventType.HOLD_PLACED,
    "releaseQualityHold": EventType.HOLD_RELEASED,
    "dispositionLot": EventType.LOT_STATUS_CHANGED,
}


class Announcer:
    def __init__(self, events: Events, upstream: Upstream) -> None:
        self.events = events
        self.upstream = upstream

    async def progressed(self, op: Operation) -> None:
        payload = {"operationId": op.id, "kind": op.kind, "state": op.state.value, "actor": op.actor}
        await self.events.publish(
            Event(id=f"lotgraph:{op.id}:{uuid.uuid4().hex}", type=EventType.OPERATION_UPDATED, source="lotgraph",
                  plant=None, lot=None, occurred=datetime.now(UTC), correlation_id=op.correlation_id or op.id,
                  payload=payload)
        )  # fmt: skip
        if op.state is OperationState.COMPLETED and (kind := COMPLETED_AS.get(op.kind)) is not None:
            await self._completed(op, kind)

    async def _completed(self, op: Operation, kind: EventType) -> None:
        lot_ids = list(dict.fromkeys(step.lot_id for step in op.steps))
        batches = await Loaders(self.upstream).batch.load_many(lot_ids)
        now = datetime.now(UTC)
        for lot_id, batch in zip(lot_ids, batches, strict=True):
            payload = {"system": "LOTGRAPH", "operationId": op.id, "kind": op.kind,
                       **{k: op.input[k] for k in ("reasonCode", "decision") if k in op.input}}  # fmt: skip
            await self.events.publish(
                Event(id=f"lotgraph:{op.id}:{lot_id}", type=kind, source="lotgraph",
                      plant=batch and batch.plant_id, occurred=now, correlation_id=op.correlation_id or op.id,
                      lot=LotRef(id=lot_id, material=batch and batch.material_id, supplier=batch and batch.supplier_id),
                      payload=payload)
            )  # fmt: skip
