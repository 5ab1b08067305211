"""The plant's quality flow as business KPIs: how long decisions take to reach every system, and what waits.

Observed as operations complete (the executor tells the service of each):
- event to effect, per workflow: the plant event's time to the workflow's last step;
- hold propagation: a QMS hold decision (a QMS user's, by its event's time; or lotgraph's own, which starts in QMS
  when its operation starts) to the last system in line;
- release cycle: a lot's production completion (or supplier receipt), by the event of the workflow that received
  it, to its release (automatic on a pass, or a qualified person's signed disposition).
Read from the store at scrape time (`refresh`): operations needing attention by kind and state (and the oldest's
age per state, zero when none waits, so an alert on it has a series to evaluate), lots awaiting
inspection (received by a workflow, no inspection outcome since) with the oldest one's age, and passed lots of
regulated material waiting for a qualified person. Labels stay bounded: plants, operation kinds (fixed by the
code), states.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.events.envelope import EventType
from gateway.store.operations import NEEDS_ATTENTION, Operation, OperationState, OperationStore
from gateway.telemetry import Metrics

RECEIPTS = ("receiveProduction", "receiveSupplierGoods")
HOLD_DECISIONS = ("placeQualityHold", "releaseQualityHold", "carryQmsHold", "carryQmsRelease")
# Workflow operations Cedar refuses for regulated material: each waits for a qualified person's signed release.
AWAITING_QUALIFIED_PERSON = ("releaseInspectedLot", "carryQmsRelease")


def released(op: Operation) -> bool:
    return op.kind == "releaseInspectedLot" or (op.kind == "dispositionLot" and op.input.get("decision") == "RELEASE")


class Kpis:
    def __init__(self, operations: OperationStore, metrics: Metrics) -> None:
        self.operations = operations
        self.metrics = metrics

    async def completed(self, op: Operation) -> None:
        """Observe what a completed operation measures."""
        now = datetime.now(UTC)
        event_at = datetime.fromisoformat(op.input["eventAt"]) if "eventAt" in op.input else None
        if event_at is not None:
            self.metrics.workflow_effect_seconds.labels(op.kind).observe((now - event_at).total_seconds())
        if op.kind in HOLD_DECISIONS:
            decided = event_at or op.created_at
            self.metrics.hold_propagation_seconds.labels(op.kind).observe((now - decided).total_seconds())
        if released(op) and (lot_id := op.input.get("lotId")):
            receipt = await self.operations.first_on_lot(RECEIPTS, lot_id)
            if receipt is not None and "eventAt" in receipt.input:
                cycle = now - datetime.fromisoformat(receipt.input["eventAt"])
                plant = receipt.input.get("plant") or "unknown"
                self.metrics.release_cycle_seconds.labels(plant, receipt.kind).observe(cycle.total_seconds())

    async def refresh(self) -> None:
        """Set the gauges from the store (at scrape time); a plant or kind with nothing waiting drops out."""
        metrics, now = self.metrics, datetime.now(UTC)
        metrics.operations_open.clear()
        oldest: dict[OperationState, datetime] = {}
        for (kind, state), (count, started) in (await self.operations.needing_attention()).items():
            metrics.operations_open.labels(kind, state.value).set(count)
            oldest[state] = min(started, oldest.get(state, started))
        for state in NEEDS_ATTENTION:  # always present: 0 says nothing waits, where a missing series says nothing
            age = (now - oldest[state]).total_seconds() if state in oldest else 0
            metrics.oldest_open_operation.labels(state.value).set(age)
        awaiting = await self.operations.lots_by_plant(
            RECEIPTS, OperationState.COMPLETED, unless_event=EventType.INSPECTION_COMPLETED.value
        )
        metrics.lots_awaiting_inspection.clear()
        metrics.oldest_awaiting_inspection.clear()
        for plant, (count, oldest) in awaiting.items():
            metrics.lots_awaiting_inspection.labels(plant).set(count)
            metrics.oldest_awaiting_inspection.labels(plant).set((now - oldest).total_seconds())
        waiting = await self.operations.lots_by_plant(AWAITING_QUALIFIED_PERSON, OperationState.BLOCKED)
        metrics.lots_awaiting_release.clear()
        for plant, (count, _) in waiting.items():
            metrics.lots_awaiting_release.labels(plant).set(count)
