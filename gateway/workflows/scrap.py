"""Scrap MES confirms on the line: posted in ERP (551/553/555 from whichever stock type holds the lot) and taken
off the lot's handling units in WMS. ERP's own scrap postings (seen in its change feed) are not reacted to: they
are the effect, not a cause."""

from __future__ import annotations

from gateway.events.envelope import Event, EventType
from gateway.operations.plans import SCRAP_REPORT_STEPS
from gateway.store.operations import Operation
from gateway.workflows.base import Workflow


class ScrapReport(Workflow):
    reacts_to = frozenset({EventType.SCRAP_CONFIRMED})

    async def handle(self, event: Event) -> Operation | None:
        assert event.lot is not None
        if event.source != "mes":
            return None
        scrapped = event.payload
        payload = {"lotId": event.lot.id, "orderId": scrapped.get("orderId"), "quantity": scrapped["quantity"],
                   "unit": scrapped["unit"], "reason": scrapped["reason"]}  # fmt: skip
        return await self.runtime.operations.automate(
            self.principal, "reportScrap", event, event.lot.id, payload, SCRAP_REPORT_STEPS
        )
