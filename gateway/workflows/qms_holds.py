"""Holds the QMS's own users place or release: carried to WMS and ERP (blocked, or back to what the QMS says).

Loop-safe by the hold's origin: lotgraph's own holds are placed with origin `lotgraph` and their QMS events are
not carried back (lotgraph already moved WMS and ERP, and a late echo could undo a release that followed). The
steps read the QMS when they run and move stock to what it says then (`gateway/operations/steps/alignment.py`),
so a hold placed and released again before its first event is handled still ends with every system agreeing.
"""

from __future__ import annotations

from gateway.contracts.qms import HOLD_ORIGIN
from gateway.events.envelope import Event, EventType
from gateway.operations.plans import FOLLOW_QMS_STEPS
from gateway.store.operations import Operation
from gateway.workflows.base import Workflow

CARRIED = {EventType.HOLD_PLACED: ("carryQmsHold", "block"), EventType.HOLD_RELEASED: ("carryQmsRelease", "release")}


class QmsHoldDecisions(Workflow):
    reacts_to = frozenset(CARRIED)

    async def handle(self, event: Event) -> Operation | None:
        assert event.lot is not None
        if event.payload.get("origin") == HOLD_ORIGIN:
            return None
        action, direction = CARRIED[event.type]
        payload = {"lotId": event.lot.id, "holdId": event.payload.get("id"), "direction": direction}
        return await self.runtime.operations.automate(
            self.principal, action, event, event.lot.id, payload, FOLLOW_QMS_STEPS
        )
