"""Inspection outcome, when it passed: the lot's stock is released in WMS and ERP (321 out of quality inspection)
to match the QMS's accepting usage decision. Whether automation may release is Cedar's decision: it never
releases regulated material, which then waits, visibly (a BLOCKED `releaseInspectedLot` in `pendingOperations`),
for a qualified person's `dispositionLot RELEASE` with an electronic signature. A failed inspection is
containment's (`containment.py`): the lot is held and a nonconformance opened."""

from __future__ import annotations

from gateway.events.envelope import Event, EventType
from gateway.operations.plans import FOLLOW_QMS_STEPS
from gateway.store.operations import Operation
from gateway.workflows.base import Workflow


class InspectionOutcome(Workflow):
    reacts_to = frozenset({EventType.INSPECTION_COMPLETED})

    async def handle(self, event: Event) -> Operation | None:
        assert event.lot is not None
        if event.payload.get("passed") is not True:
            return None
        payload = {"lotId": event.lot.id, "inspectionLot": event.payload.get("id"), "direction": "release"}
        return await self.runtime.operations.automate(
            self.principal, "releaseInspectedLot", event, event.lot.id, payload, FOLLOW_QMS_STEPS
        )
