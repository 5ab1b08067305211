"""Production completion: a lot MES reports complete becomes a goods receipt of its production order in ERP (with
the consumed lots issued), handling units in quarantine in WMS and a production inspection lot in QMS, so all
three systems say "in inspection" until quality decides."""

from __future__ import annotations

from gateway.events.envelope import Event, EventType
from gateway.operations.plans import PRODUCTION_RECEIPT_STEPS
from gateway.store.operations import Operation
from gateway.workflows.base import Workflow
from policies import entities


class ProductionReceipt(Workflow):
    reacts_to = frozenset({EventType.PRODUCTION_COMPLETED})

    async def handle(self, event: Event) -> Operation:
        assert event.lot is not None and event.plant is not None
        done = event.payload
        payload = {
            "lotId": event.lot.id, "orderId": done["orderId"], "material": done["material"], "plant": event.plant,
            "line": done["line"], "quantity": done["quantity"], "unit": done["unit"], "inspectionOrigin": "04",
            "consumed": [{"lotId": c["lotId"], "quantity": c["quantity"], "unit": c["unit"]} for c in done["consumed"]],
        }  # fmt: skip
        lot = entities.lot(event.lot.id, plant=event.plant, material=done["material"])
        return await self.runtime.operations.automate(
            self.principal, "receiveProduction", event, lot, payload, PRODUCTION_RECEIPT_STEPS
        )
