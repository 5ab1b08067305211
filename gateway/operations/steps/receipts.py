"""The steps that bring an arrived lot into the books: a production order's or a purchase order's goods receipt
in ERP (quality-inspection stock), its handling units in WMS (quarantine), its inspection lot in QMS.

Each is safe to repeat, and keyed by the lot (a lot arrives once, whichever event announced it: a completion
the MES sends again under a new id finds the first receipt). The ERP keeps no idempotency key for material
documents, so its step looks first: a batch the ERP already has from this order was received (by an earlier run
that died before recording it), and is not posted twice. Before posting, the step checks the order context the
way the ERP will (released order, same material and plant, quantity within the tolerance), so a refusal names
what does not fit; the ERP still has the last word, and a refusal of its own fails the step with its message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.contracts.base import Keys
from gateway.contracts.erp import ComponentIssue, ProductionReceipt, PurchaseReceipt
from gateway.contracts.qms import InspectionLotCreation
from gateway.contracts.wms import HandlingUnitReceipt
from gateway.errors import WorkflowRefused
from gateway.model import ErpStock, Lot, ProductionOrder, PurchaseOrderItem, StockStatus
from gateway.operations.steps.base import Outcome
from gateway.operations.steps.holds import wms_move
from gateway.store.operations import Operation, Step
from gateway.upstream import Upstream


async def _received_already(upstream: Upstream, lot_id: str, contract: str, **origin: str | None) -> Outcome | None:
    """The outcome of an earlier run if the ERP already has the batch from this order; a batch of another order
    is refused (the same lot number received twice would merge two lots' stock)."""
    batches: list[Lot] = await upstream.call("erp", "batch.read", Keys(keys=(lot_id,)))
    if not batches:
        return None
    batch = batches[0]
    found = {"production_order_id": batch.production_order_id, "purchase_order": batch.purchase_order}
    if all(found[name] == value for name, value in origin.items()):
        return Outcome(contract, {"reason": "the ERP already has this batch from this order"}, skipped=True)
    raise WorkflowRefused(f"the ERP already has batch {lot_id} from another order ({found})", lotId=lot_id)


def _within_tolerance(what: str, ordered: float, received: float, tolerance: float, quantity: float) -> None:
    allowed = ordered * (1 + tolerance / 100)
    if received + quantity > allowed + 1e-9:
        raise WorkflowRefused(
            f"receiving {quantity:g} on {what} would bring {received + quantity:g} of {ordered:g} ordered, over the "
            f"{tolerance:g} % tolerance ({allowed:g})"
        )


async def _issues(upstream: Upstream, consumed: list[Mapping[str, Any]]) -> tuple[ComponentIssue, ...]:
    """The component issues of the consumed lots, from their unrestricted stock (where the ERP issues from)."""
    if not consumed:
        return ()
    stock: list[ErpStock] = await upstream.call("erp", "stock.read", Keys(keys=tuple(c["lotId"] for c in consumed)))
    unrestricted = {row.lot_id: row for row in stock if row.status is StockStatus.AVAILABLE and row.quantity > 0}
    issues = []
    for used in consumed:
        row = unrestricted.get(used["lotId"])
        if row is None:
            raise WorkflowRefused(f"the ERP has no unrestricted stock of consumed lot {used['lotId']} to issue")
        issues.append(ComponentIssue(lot_id=row.lot_id, material=row.material_id, plant=row.plant_id,
                                     storage_location=row.storage_location, quantity=used["quantity"],
                                     unit=used["unit"]))  # fmt: skip
    return tuple(issues)


async def erp_receive_production(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    arrived = op.input
    contract = upstream.contract("erp", "production_receipt.post").name
    if done := await _received_already(upstream, step.lot_id, contract, production_order_id=arrived["orderId"]):
        return done
    orders: list[ProductionOrder] = await upstream.call(
        "erp", "production_order.read", Keys(keys=(arrived["orderId"],))
    )
    if not orders:
        raise WorkflowRefused(f"the ERP has no production order {arrived['orderId']}")
    order = orders[0]
    if order.status != "REL":
        raise WorkflowRefused(f"production order {order.id} is not released (status {order.status})")
    if (order.material_id, order.plant_id) != (arrived["material"], arrived["plant"]):
        raise WorkflowRefused(
            f"production order {order.id} is for {order.material_id} in {order.plant_id}, not {arrived['material']} "
            f"in {arrived['plant']}"
        )
    _within_tolerance(f"production order {order.id}", order.planned_quantity, order.received_quantity,
                      order.over_delivery_tolerance, arrived["quantity"])  # fmt: skip
    receipt = ProductionReceipt(
        order_id=order.id, lot_id=step.lot_id, material=order.material_id, plant=order.plant_id,
        storage_location=order.storage_location, quantity=arrived["quantity"], unit=arrived["unit"],
        issues=await _issues(upstream, arrived.get("consumed", [])),
    )  # fmt: skip
    (document,) = await upstream.call("erp", "production_receipt.post", receipt)
    issued = [issue.lot_id for issue in receipt.issues]
    return Outcome(
        contract,
        {
            "document": document.document,
            "movements": ["101", *(["261"] if issued else [])],
            "order": order.id,
            "issued": issued,
            "after": StockStatus.QUALITY_INSPECTION.value,
        },
    )


async def erp_receive_purchase(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    arrived = op.input
    contract = upstream.contract("erp", "purchase_receipt.post").name
    if done := await _received_already(upstream, step.lot_id, contract, purchase_order=arrived["purchaseOrder"]):
        return done
    items: list[PurchaseOrderItem] = await upstream.call(
        "erp", "purchase_order.read", Keys(keys=(arrived["purchaseOrder"],))
    )
    item = next((i for i in items if i.item == arrived["purchaseOrderItem"]), None)
    if item is None:
        raise WorkflowRefused(
            f"the ERP has no purchase order item {arrived['purchaseOrder']}/{arrived['purchaseOrderItem']}"
        )
    if (item.material_id, item.plant_id) != (arrived["material"], arrived["plant"]):
        raise WorkflowRefused(
            f"purchase order item {item.purchase_order}/{item.item} is for {item.material_id} in {item.plant_id}, "
            f"not {arrived['material']} in {arrived['plant']}"
        )
    what = f"purchase order item {item.purchase_order}/{item.item}"
    _within_tolerance(what, item.quantity, item.received_quantity, item.over_delivery_tolerance, arrived["quantity"])
    receipt = PurchaseReceipt(
        purchase_order=item.purchase_order, purchase_order_item=item.item, lot_id=step.lot_id,
        supplier_batch=arrived.get("supplierBatch", ""), material=item.material_id, plant=item.plant_id,
        storage_location=item.storage_location, quantity=arrived["quantity"], unit=arrived["unit"],
    )  # fmt: skip
    (document,) = await upstream.call("erp", "purchase_receipt.post", receipt)
    return Outcome(contract, {"document": document.document, "movements": ["101"], "supplier": item.supplier_id,
                              "after": StockStatus.QUALITY_INSPECTION.value})  # fmt: skip


async def wms_receive(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    """The produced lot's handling units, in quarantine until quality releases them."""
    arrived = op.input
    receipt = HandlingUnitReceipt(
        lot_id=step.lot_id, material_id=arrived["material"], plant=arrived["plant"], quantity=arrived["quantity"],
        unit=arrived["unit"], status=StockStatus.QUALITY_INSPECTION, reference=f"receipt/{step.lot_id}",
    )  # fmt: skip
    (received,) = await upstream.call("wms", "handling_units.receive", receipt)
    return Outcome(
        upstream.contract("wms", "handling_units.receive").name,
        {"handlingUnits": list(received.handling_units), "after": received.status.value},
    )


async def wms_quarantine(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    """Supplier material the dock received: its handling units stay in quarantine until quality releases them."""
    return await wms_move(upstream, op, step, StockStatus.QUALITY_INSPECTION)


async def qms_inspect(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    """The arrived lot's inspection lot (origin 04 for production, 01 for a goods receipt)."""
    arrived = op.input
    request = InspectionLotCreation(
        lot_id=step.lot_id, material=arrived["material"], plant=arrived["plant"], origin=arrived["inspectionOrigin"],
        supplier=arrived.get("supplier"), quantity=arrived["quantity"], unit=arrived["unit"],
        request_id=f"arrival/{step.lot_id}",
    )  # fmt: skip
    (inspection,) = await upstream.call("qms", "inspection_lot.create", request)
    return Outcome(upstream.contract("qms", "inspection_lot.create").name,
                   {"inspectionLot": inspection.id, "origin": inspection.origin, "after": "IN_INSPECTION"})  # fmt: skip
