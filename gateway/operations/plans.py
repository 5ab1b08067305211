"""Which steps each kind of operation takes, in which order: QMS (system of record for the decision)
first, then WMS (physical stock), then ERP (booked stock), for every lot concerned."""

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
