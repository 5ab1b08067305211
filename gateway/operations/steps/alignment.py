"""Steps that bring WMS and ERP in line with what QMS, the system of record for quality, says about a lot now.

Workflows that carry a quality decision (a passed inspection, a hold placed or released by the QMS's own users)
do not replay the event that announced it: they read the lot's quality status when the step runs and move the
stock to match. Events arriving late or out of order, or a hold placed and released again before the step ran,
therefore still end with the systems agreeing. A step that only carries holds (`direction` "block") never
unblocks anything; one that was decided while QMS had not released the lot (`direction` "restrict", a repair)
never makes it available.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.contracts.base import Keys
from gateway.errors import NotFound
from gateway.model import LotQuality, QualityStatus, StockStatus
from gateway.operations.steps.base import Outcome
from gateway.operations.steps.holds import BLOCK_MOVES, UNBLOCK_MOVES, erp_rebook, wms_move
from gateway.store.operations import Operation, Step
from gateway.upstream import Upstream

TARGET = {
    QualityStatus.RELEASED: StockStatus.AVAILABLE,
    QualityStatus.IN_INSPECTION: StockStatus.QUALITY_INSPECTION,
    QualityStatus.ON_HOLD: StockStatus.BLOCKED,
    QualityStatus.REJECTED: StockStatus.BLOCKED,
}
# ERP transfer postings into each stock type, by the stock type the stock is in now.
ERP_MOVES: Mapping[StockStatus, Mapping[StockStatus, str]] = {
    StockStatus.AVAILABLE: UNBLOCK_MOVES,
    StockStatus.BLOCKED: BLOCK_MOVES,
    StockStatus.QUALITY_INSPECTION: {StockStatus.AVAILABLE: "322", StockStatus.BLOCKED: "349"},
}


async def _target(upstream: Upstream, op: Operation, step: Step) -> tuple[StockStatus, QualityStatus] | str:
    """Where QMS says the lot's stock belongs, or why this step has nothing to carry."""
    records: list[LotQuality] = await upstream.call("qms", "lot_quality.read", Keys(keys=(step.lot_id,)))
    if not records:
        raise NotFound(f"QMS does not know lot {step.lot_id}", source="qms")
    quality = records[0].status
    target = TARGET[quality]
    if op.input.get("direction") == "block" and target is not StockStatus.BLOCKED:
        return f"QMS no longer holds the lot (it is {quality.value})"
    if op.input.get("direction") == "restrict" and target is StockStatus.AVAILABLE:
        return "QMS released the lot after this operation was decided: making it available needs a decision of its own"
    return target, quality


async def wms_follow_qms(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    found = await _target(upstream, op, step)
    if isinstance(found, str):
        return Outcome(upstream.contract("wms", "stock.move").name, {"reason": found}, skipped=True)
    moved = await wms_move(upstream, op, step, found[0])
    return Outcome(moved.contract, {**moved.detail, "qualityStatus": found[1].value}, moved.skipped)


async def erp_follow_qms(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    found = await _target(upstream, op, step)
    if isinstance(found, str):
        return Outcome(upstream.contract("erp", "goods_movement.post").name, {"reason": found}, skipped=True)
    target, quality = found
    rebooked = await erp_rebook(upstream, step, ERP_MOVES[target], restricted=target is StockStatus.BLOCKED)
    return Outcome(rebooked.contract, {**rebooked.detail, "after": target.value, "qualityStatus": quality.value})
