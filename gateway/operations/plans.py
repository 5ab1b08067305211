"""Which steps each kind of operation takes, in which order, for every lot concerned. A quality decision goes
QMS (its system of record) first, then WMS (physical stock), then ERP (booked stock); an arriving lot goes ERP
first (a receipt the ERP refuses is recorded nowhere else), then WMS, then QMS's inspection lot."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.operations import StepPlan

HOLD_STEPS = (("qms", "place_hold"), ("wms", "block"), ("erp", "block"))
RELEASE_STEPS = (("qms", "release_hold"), ("wms", "unblock"), ("erp", "unblock"))
DISPOSITION_STEPS = {
    "RELEASE": (("qms", "disposition"), ("wms", "unblock"), ("erp", "unblock")),
    "SCRAP": (("qms", "disposition"), ("wms", "close"), ("erp", "scrap")),
    "REWORK": (("qms", "disposition"), ("wms", "block"), ("erp", "block")),
    "RETURN_TO_SUPPLIER": (("qms", "disposition"), ("wms", "block"), ("erp", "block")),
}


def plan(steps: Sequence[tuple[str, str]], lot_ids: Sequence[str]) -> list[StepPlan]:
    """System by system, every lot: so a recall costs one round per system, not one per lot."""
    return [StepPlan(system, lot_id, action) for system, action in steps for lot_id in lot_ids]


# The plant's workflows (gateway/workflows/).
CONTAINMENT_STEPS = (("qms", "place_hold"), ("qms", "open_nonconformance"), ("wms", "block"), ("erp", "block"))
PRODUCTION_RECEIPT_STEPS = (("erp", "receive_production"), ("wms", "receive"), ("qms", "inspect"))
PURCHASE_RECEIPT_STEPS = (("erp", "receive_purchase"), ("wms", "quarantine"), ("qms", "inspect"))
FOLLOW_QMS_STEPS = (("wms", "follow_qms"), ("erp", "follow_qms"))
SCRAP_REPORT_STEPS = (("erp", "scrap_quantity"), ("wms", "reduce"))
