"""What each step of an operation does in its system, through the versioned write contracts: one module per
family of operations, this table naming every step `<system>.<action>` the plans (`plans.py`) may use."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.operations.steps.alignment import erp_follow_qms, wms_follow_qms
from gateway.operations.steps.base import BatchRunner, Outcome, StepRunner
from gateway.operations.steps.holds import (
    erp_block,
    erp_block_many,
    erp_scrap,
    erp_unblock,
    qms_disposition,
    qms_open_nonconformance,
    qms_place_hold,
    qms_place_holds,
    qms_release_hold,
    wms_block,
    wms_block_many,
    wms_close,
    wms_unblock,
)
from gateway.operations.steps.receipts import (
    erp_receive_production,
    erp_receive_purchase,
    qms_inspect,
    wms_quarantine,
    wms_receive,
)
from gateway.operations.steps.scrap import erp_scrap_quantity, wms_reduce

__all__ = ["BATCH_RUNNERS", "RUNNERS", "BatchRunner", "Outcome", "StepRunner"]

RUNNERS: Mapping[str, StepRunner] = {
    "qms.place_hold": qms_place_hold,
    "qms.open_nonconformance": qms_open_nonconformance,
    "qms.release_hold": qms_release_hold,
    "wms.block": wms_block,
    "wms.unblock": wms_unblock,
    "erp.block": erp_block,
    "erp.unblock": erp_unblock,
    "qms.disposition": qms_disposition,
    "wms.close": wms_close,
    "erp.scrap": erp_scrap,
    "erp.receive_production": erp_receive_production,
    "erp.receive_purchase": erp_receive_purchase,
    "wms.receive": wms_receive,
    "wms.quarantine": wms_quarantine,
    "qms.inspect": qms_inspect,
    "wms.follow_qms": wms_follow_qms,
    "erp.follow_qms": erp_follow_qms,
    "erp.scrap_quantity": erp_scrap_quantity,
    "wms.reduce": wms_reduce,
}

# Steps whose system takes many lots per request: the executor hands them the whole group at once.
BATCH_RUNNERS: Mapping[str, BatchRunner] = {
    "qms.place_hold": qms_place_holds,
    "wms.block": wms_block_many,
    "erp.block": erp_block_many,
}
