"""The steps of scrap MES reports: the quantity leaves ERP's books and the WMS's handling units.

The ERP posts scrap from whichever stock types hold the lot (551 unrestricted, 553 quality inspection, 555
blocked), the inspection stock first (a produced lot is scrapped on the line before quality releases it).
Material documents carry no idempotency key, so the posting names the operation in its item text, and the
step looks for that document before posting: a run that died after posting never posts twice.
"""

from __future__ import annotations

from gateway.contracts.base import Keys
from gateway.contracts.erp import GoodsMovementPosting, PostingItem
from gateway.contracts.wms import StockReduction
from gateway.errors import WorkflowRefused
from gateway.model import ErpStock, GoodsMovement, StockStatus
from gateway.operations.steps.base import Outcome
from gateway.operations.steps.holds import SCRAP_MOVES
from gateway.store.operations import Operation, Step
from gateway.upstream import Upstream

SCRAP_ORDER = (StockStatus.QUALITY_INSPECTION, StockStatus.AVAILABLE, StockStatus.BLOCKED)


def document_reference(op: Operation) -> str:
    """The operation as a material document item text (SAP allows 50 characters)."""
    return f"lotgraph {op.id}"


async def erp_scrap_quantity(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    contract = upstream.contract("erp", "goods_movement.post").name
    reference = document_reference(op)
    movements: list[GoodsMovement] = await upstream.call("erp", "material_document.read", Keys(keys=(step.lot_id,)))
    if posted := next((m for m in movements if m.text == reference), None):
        return Outcome(contract, {"document": posted.document, "reason": "already posted"}, skipped=True)
    stock: list[ErpStock] = await upstream.call("erp", "stock.read", Keys(keys=(step.lot_id,)))
    left, items = float(op.input["quantity"]), []
    for status in SCRAP_ORDER:
        for row in (r for r in stock if r.status is status and r.quantity > 0):
            if left <= 0:
                break
            take = min(left, row.quantity)
            items.append(PostingItem(movement_type=SCRAP_MOVES[status], material=row.material_id, plant=row.plant_id,
                                     storage_location=row.storage_location, lot_id=row.lot_id, quantity=take,
                                     unit=row.unit))  # fmt: skip
            left -= take
    if left > 1e-9:
        raise WorkflowRefused(f"the ERP books {op.input['quantity'] - left:g} of lot {step.lot_id}, less than the "
                              f"{op.input['quantity']:g} scrapped")  # fmt: skip
    (document,) = await upstream.call(
        "erp", "goods_movement.post", GoodsMovementPosting(items=tuple(items), reference=reference)
    )
    return Outcome(contract, {"document": document.document, "movements": sorted({i.movement_type for i in items}),
                              "quantity": op.input["quantity"]})  # fmt: skip


async def wms_reduce(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    request = StockReduction(lot_id=step.lot_id, quantity=op.input["quantity"], unit=op.input["unit"],
                             reason=op.input["reason"], reference=f"{op.id}/{step.lot_id}")  # fmt: skip
    (reduced,) = await upstream.call("wms", "stock.reduce", request)
    return Outcome(upstream.contract("wms", "stock.reduce").name,
                   {"reduced": reduced.reduced, "remaining": reduced.remaining})  # fmt: skip
