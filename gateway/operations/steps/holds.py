"""The steps of quality holds, releases and dispositions, through the versioned write contracts.

Every step is safe to repeat: QMS deduplicates hold placements by request id and answers a released
hold again; a WMS move to the status a lot already has changes nothing; the ERP step re-reads the
lot's stock and posts only what is still in the wrong stock type. That is what lets an interrupted
operation simply run its unfinished steps again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from gateway.contracts.base import Keys
from gateway.contracts.erp import BatchRestriction, BatchRestrictions, GoodsMovementPosting, PostingItem
from gateway.contracts.qms import DispositionRecord, HoldPlacement, HoldPlacements, HoldRelease, NonconformanceReport
from gateway.contracts.wms import StockClosure, StockMove, StockMoves
from gateway.errors import GatewayError, NotFound, UpstreamRejected
from gateway.model import ErpStock, HoldStatus, QualityHold, StockMoved, StockStatus
from gateway.operations.steps.base import Outcome, Outcomes, each, one_each, settled
from gateway.store.operations import Operation, Step
from gateway.upstream import Upstream

# Blocking moves unrestricted (01) and quality-inspection (02) stock to blocked; unblocking the reverse.
BLOCK_MOVES = {StockStatus.AVAILABLE: "344", StockStatus.QUALITY_INSPECTION: "350"}
UNBLOCK_MOVES = {StockStatus.BLOCKED: "343", StockStatus.QUALITY_INSPECTION: "321"}
# Scrapping takes stock off the books from whichever stock type holds it.
SCRAP_MOVES = {StockStatus.AVAILABLE: "551", StockStatus.QUALITY_INSPECTION: "553", StockStatus.BLOCKED: "555"}


def _placement(op: Operation, step: Step) -> HoldPlacement:
    return HoldPlacement(lot_id=step.lot_id, reason_code=op.input["reasonCode"], reason=op.input["reason"],
                         placed_by=op.actor, request_id=f"{op.id}/{step.lot_id}")  # fmt: skip


async def qms_place_hold(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    (hold,) = await upstream.call("qms", "hold.place", _placement(op, step))
    return Outcome(upstream.contract("qms", "hold.place").name, {"holdId": hold.id, "after": "ON_HOLD"})


async def qms_place_holds(upstream: Upstream, op: Operation, steps: Sequence[Step]) -> Outcomes:
    """A recall's holds in one bulk request (each idempotent by its request id, as one at a time): a lot the QMS
    refuses fails alone."""
    contract = upstream.contract("qms", "hold.place_many").name
    request = HoldPlacements(placements=tuple(_placement(op, step) for step in steps))
    holds: list[QualityHold | GatewayError] = await upstream.call("qms", "hold.place_many", request)
    one_each(contract, steps, holds)
    return [h if isinstance(h, GatewayError) else Outcome(contract, {"holdId": h.id, "after": "ON_HOLD"})
            for h in holds]  # fmt: skip


async def qms_open_nonconformance(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    """The nonconformance a failed inspection calls for, opened beside the containment hold."""
    failure = op.input["nonconformance"]
    request = NonconformanceReport(lot_id=step.lot_id, category=failure["category"], severity=failure["severity"],
                                   description=failure["description"], request_id=f"{op.id}/{step.lot_id}")  # fmt: skip
    (nc,) = await upstream.call("qms", "nonconformance.create", request)
    return Outcome(upstream.contract("qms", "nonconformance.create").name, {"nonconformanceId": nc.id})


async def qms_release_hold(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    request = HoldRelease(hold_id=op.input["holdId"], released_by=op.actor, justification=op.input["justification"])
    (hold,) = await upstream.call("qms", "hold.release", request)
    return Outcome(upstream.contract("qms", "hold.release").name, {"holdId": hold.id, "after": hold.status.value})


async def _other_active_holds(upstream: Upstream, op: Operation, lot_id: str) -> list[str]:
    holds: list[QualityHold] = await upstream.call("qms", "hold.by_lot", Keys(keys=(lot_id,)))
    return [h.id for h in holds if h.status is HoldStatus.ACTIVE and h.id != op.input.get("holdId")]


async def wms_move(upstream: Upstream, op: Operation, step: Step, status: StockStatus) -> Outcome:
    contract = upstream.contract("wms", "stock.move").name
    try:
        (moved,) = await upstream.call(
            "wms", "stock.move", StockMove(lot_id=step.lot_id, status=status, reference=op.id)
        )
    except NotFound:
        # A 404 on the move may be a proxy, a routing error or a deployment, not the WMS saying the lot has no
        # stock: only the WMS's own stock query, answering with no positions, makes skipping the step safe.
        if await upstream.call("wms", "stock.read", Keys(keys=(step.lot_id,))):
            raise
        return Outcome(contract, {"reason": "the WMS reports no stock of this lot"}, skipped=True)
    return Outcome(contract, {"handlingUnits": moved.handling_units, "after": moved.status.value})


async def wms_block(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    return await wms_move(upstream, op, step, StockStatus.BLOCKED)


async def wms_block_many(upstream: Upstream, op: Operation, steps: Sequence[Step]) -> Outcomes:
    """A recall's WMS blocks in one bulk request where the WMS's API version has it. A lot the WMS's own answer
    says it has no stock of (its item's 404 inside the WMS's answer, not a proxy's) is skipped."""
    if not upstream.offers("wms", "stock.move_many"):
        return await each(wms_block, upstream, op, steps)
    contract = upstream.contract("wms", "stock.move_many").name
    request = StockMoves(moves=tuple(StockMove(lot_id=s.lot_id, status=StockStatus.BLOCKED, reference=op.id)
                                     for s in steps))  # fmt: skip
    moved: list[StockMoved | GatewayError] = await upstream.call("wms", "stock.move_many", request)
    one_each(contract, steps, moved)
    return [
        Outcome(contract, {"reason": "the WMS reports no stock of this lot"}, skipped=True) if isinstance(m, NotFound)
        else m if isinstance(m, GatewayError)
        else Outcome(contract, {"handlingUnits": m.handling_units, "after": m.status.value})
        for m in moved
    ]  # fmt: skip


async def wms_unblock(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    if others := await _other_active_holds(upstream, op, step.lot_id):
        return Outcome(upstream.contract("wms", "stock.move").name, {"reason": f"still held by {others}"}, True)
    return await wms_move(upstream, op, step, StockStatus.AVAILABLE)


def postings(stock: Iterable[ErpStock], moves: Mapping[StockStatus, str]) -> Iterator[PostingItem]:
    """The movements that take a lot's stock out of the stock types `moves` covers."""
    for row in stock:
        if row.status in moves and row.quantity > 0:
            yield PostingItem(
                movement_type=moves[row.status],
                material=row.material_id,
                plant=row.plant_id,
                storage_location=row.storage_location,
                lot_id=row.lot_id,
                quantity=row.quantity,
                unit=row.unit,
            )


async def erp_rebook(upstream: Upstream, step: Step, moves: Mapping[StockStatus, str], restricted: bool) -> Outcome:
    stock: list[ErpStock] = await upstream.call("erp", "stock.read", Keys(keys=(step.lot_id,)))
    before = sorted({row.status.value for row in stock if row.quantity > 0})
    items = tuple(postings(stock, moves))
    detail: dict[str, Any] = {"before": before}
    if items:
        (document,) = await upstream.call("erp", "goods_movement.post", GoodsMovementPosting(items=items))
        detail |= {"document": document.document, "movements": sorted({i.movement_type for i in items})}
    await upstream.call("erp", "batch.restrict", BatchRestriction(lot_id=step.lot_id, restricted=restricted))
    detail["restricted"] = restricted
    return Outcome(upstream.contract("erp", "goods_movement.post").name, detail)


async def erp_block(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    return await erp_rebook(upstream, step, BLOCK_MOVES, restricted=True)


LOTS_PER_DOCUMENT = 50


async def erp_block_many(upstream: Upstream, op: Operation, steps: Sequence[Step]) -> Outcomes:
    """Block many lots (a recall) the way the ERP allows batching: one stock read and one ETag read per key batch,
    one material document per `LOTS_PER_DOCUMENT` lots, every batch flag in one OData `$batch`. A lot whose flag the
    ERP refuses fails alone (its postings are done: a rerun finds nothing left to post)."""
    lot_ids = [step.lot_id for step in steps]
    keys = Keys(keys=tuple(lot_ids))
    stock, etags = await asyncio.gather(upstream.call("erp", "stock.read", keys),
                                        upstream.call("erp", "batch.etag.read", keys))  # fmt: skip
    rows_by_lot: dict[str, list[ErpStock]] = defaultdict(list)
    for row in stock:
        rows_by_lot[row.lot_id].append(row)
    details: dict[str, dict[str, Any]] = {
        lot: {"before": sorted({r.status.value for r in rows_by_lot[lot] if r.quantity > 0})} for lot in lot_ids
    }
    chunks = [lot_ids[start : start + LOTS_PER_DOCUMENT] for start in range(0, len(lot_ids), LOTS_PER_DOCUMENT)]
    documents = [
        items
        for chunk in chunks
        if (items := tuple(i for lot in chunk for i in postings(rows_by_lot[lot], BLOCK_MOVES)))
    ]
    posted = await asyncio.gather(
        *(upstream.call("erp", "goods_movement.post", GoodsMovementPosting(items=items)) for items in documents)
    )
    for items, (document,) in zip(documents, posted, strict=True):
        for lot in {item.lot_id for item in items}:
            moved = sorted({i.movement_type for i in items if i.lot_id == lot})
            details[lot] |= {"document": document.document, "movements": moved}
    restricted = await _restrict_many(upstream, lot_ids, dict(etags))
    contract = upstream.contract("erp", "goods_movement.post").name
    return [r if isinstance(r, GatewayError) else Outcome(contract, details[lot] | {"restricted": True})
            for lot, r in zip(lot_ids, restricted, strict=True)]  # fmt: skip


async def _restrict_many(upstream: Upstream, lot_ids: Sequence[str], etags: Mapping[str, str]) -> list[Any]:
    """Every lot's batch flagged restricted: in one `$batch` with the ETags just read; a lot whose batch changed
    meanwhile (412), or whose ETag was not read, on its own (its ETag read again), as a single restriction is."""
    known = [lot for lot in lot_ids if lot in etags]
    results: dict[str, Any] = {}
    if known:
        request = BatchRestrictions(restrictions=tuple(BatchRestriction(lot_id=lot, restricted=True, etag=etags[lot])
                                                       for lot in known))  # fmt: skip
        results = dict(zip(known, await upstream.call("erp", "batch.restrict_many", request), strict=True))
    again = [lot for lot in lot_ids if lot not in results or _changed_meanwhile(results[lot])]
    alone = await asyncio.gather(
        *(upstream.call("erp", "batch.restrict", BatchRestriction(lot_id=lot, restricted=True)) for lot in again),
        return_exceptions=True,
    )
    results |= dict(zip(again, settled(alone), strict=True))
    return [results[lot] for lot in lot_ids]


def _changed_meanwhile(result: Any) -> bool:
    return isinstance(result, UpstreamRejected) and result.details.get("status") == 412


async def erp_unblock(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    if others := await _other_active_holds(upstream, op, step.lot_id):
        return Outcome(
            upstream.contract("erp", "goods_movement.post").name, {"reason": f"still held by {others}"}, True
        )
    return await erp_rebook(upstream, step, UNBLOCK_MOVES, restricted=False)


async def qms_disposition(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    request = DispositionRecord(
        lot_id=step.lot_id,
        decision=op.input["decision"],
        reason=op.input["reason"],
        decided_by=op.actor,
        request_id=f"{op.id}/{step.lot_id}",
    )
    (recorded,) = await upstream.call("qms", "disposition.record", request)
    return Outcome(upstream.contract("qms", "disposition.record").name, recorded)


async def wms_close(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    (closed,) = await upstream.call("wms", "stock.close", StockClosure(lot_id=step.lot_id, reference=op.id))
    return Outcome(upstream.contract("wms", "stock.close").name, {"handlingUnitsClosed": closed})


async def erp_scrap(upstream: Upstream, op: Operation, step: Step) -> Outcome:
    return await erp_rebook(upstream, step, SCRAP_MOVES, restricted=True)
