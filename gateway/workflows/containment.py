"""Automatic containment: an event that shows bad material (by default a failed inspection or an opened
nonconformance) places a quality hold on its lot, so rejected stock never stays available.

The hold is the governed operation `placeQualityHold`, done by the containment service principal: Cedar
decides, the decision is audited with the event, the operation is keyed by the event id (a redelivered event
holds once) and runs QMS -> WMS -> ERP. A failed inspection also opens a nonconformance in QMS, beside the hold.
A nonconformance on a lot that is already held (the one containment just opened, or any other) needs no second
hold. Nothing is silent: a hold whose systems are down stays PENDING and is resumed; one Cedar refuses is
recorded BLOCKED with why; both show in `pendingOperations`.
"""

from __future__ import annotations

from gateway.contracts.base import Keys
from gateway.events.envelope import Event, EventType
from gateway.model import HoldStatus, QualityHold
from gateway.operations.plans import CONTAINMENT_STEPS, HOLD_STEPS
from gateway.runtime import Runtime
from gateway.store.operations import Operation
from gateway.workflows.base import Workflow, service_principal


class Containment(Workflow):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.settings = runtime.settings.events.containment
        self.principal = service_principal(
            self.settings.principal, "Automatic containment", "containment_service", self.settings.plants
        )
        self.reacts_to = frozenset(trigger.type for trigger in self.settings.triggers)  # type: ignore[misc]

    def triggered_by(self, event: Event) -> bool:
        return any(trigger.matches(event) for trigger in self.settings.triggers)

    async def handle(self, event: Event) -> Operation | None:
        assert event.lot is not None
        if not self.triggered_by(event):
            return None
        failed_inspection = event.type is EventType.INSPECTION_COMPLETED and event.payload.get("passed") is False
        if not failed_inspection and await self._held(event.lot.id):
            return None
        reason = f"automatic containment after {event.type.value} ({event.source} event {event.id})"
        payload = {"lotId": event.lot.id, "reasonCode": self.settings.reason_code, "reason": reason}
        if failed_inspection:
            failing = [r["characteristic"] for r in event.payload.get("results", []) if r.get("passed") is False]
            payload["nonconformance"] = {
                "category": "Inspection failure", "severity": "major",
                "description": f"inspection lot {event.payload.get('id')} rejected"
                               + (f": {', '.join(failing)} outside the limits" if failing else ""),
            }  # fmt: skip
        steps = CONTAINMENT_STEPS if failed_inspection else HOLD_STEPS
        return await self.runtime.operations.automate(
            self.principal, "placeQualityHold", event, event.lot.id, payload, steps
        )

    async def _held(self, lot_id: str) -> bool:
        holds: list[QualityHold] = await self.runtime.upstream.call("qms", "hold.by_lot", Keys(keys=(lot_id,)))
        return any(hold.status is HoldStatus.ACTIVE for hold in holds)
