"""Supplier goods receipt: a delivery the WMS receiving dock reports becomes a goods receipt against its purchase
order in ERP (quality-inspection stock), stays in quarantine in WMS and gets an incoming inspection lot in QMS.

The dock announces it because in the plant it sees the delivery first: the truck is unloaded and the handling
units labelled before anyone books anything, and the ERP's change feed would only show the receipt after
someone posted it by hand, which is the step this workflow does.
"""

from __future__ import annotations

from gateway.events.envelope import Event, EventType
from gateway.operations.plans import PURCHASE_RECEIPT_STEPS
from gateway.store.operations import Operation
from gateway.workflows.base import Workflow
from policies import entities


class SupplierReceipt(Workflow):
    reacts_to = frozenset({EventType.GOODS_RECEIVED})

    async def handle(self, event: Event) -> Operation:
        assert event.lot is not None and event.plant is not None
        received = event.payload
        payload = {
            "lotId": event.lot.id, "purchaseOrder": received["purchaseOrder"],
            "purchaseOrderItem": received["purchaseOrderItem"], "material": received["material"],
            "plant": event.plant, "supplier": received["supplier"], "supplierBatch": received.get("supplierBatch", ""),
            "quantity": received["quantity"], "unit": received["unit"], "inspectionOrigin": "01",
        }  # fmt: skip
        lot = entities.lot(
            event.lot.id, plant=event.plant, material=received["material"], supplier=received["supplier"]
        )
        return await self.runtime.operations.automate(
            self.principal, "receiveSupplierGoods", event, lot, payload, PURCHASE_RECEIPT_STEPS
        )
