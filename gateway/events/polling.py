"""ERP postings, for a system that cannot push: the change feed is polled after a cursor kept in the store.

The cursor is saved only after the events of a page are in the inbox, so a crash repeats a page (the inbox answers
the repeats as duplicates) but never skips one. Replicas sharing a store poll the same feed; dedupe makes that
safe.
Stock-type transfers and batch restrictions become `LotStatusChanged` (the ERP's view), scrap movements
`ScrapConfirmed`; other postings (receipts, consumption) move the cursor and are counted, but are not
plant events of their own (MES reports production).
"""

from __future__ import annotations

import asyncio
import logging

from gateway.contracts.erp import ChangeQuery
from gateway.errors import GatewayError
from gateway.events.envelope import Event, EventType, LotRef
from gateway.events.hub import Events
from gateway.model import ErpPosting
from gateway.reads import Loaders
from gateway.store.cursors import IngestCursors
from gateway.upstream import Upstream

log = logging.getLogger("lotgraph.events.erp")
SOURCE = "erp"
SCRAP_MOVEMENTS = frozenset({"551", "553", "555"})
PAGE = 500


def to_event(posting: ErpPosting, supplier: str | None) -> Event | None:
    """The plant event a posting amounts to, if any; `supplier` (from the batch) lets suppliers see it."""
    lot = LotRef(id=posting.lot_id, material=posting.material_id, supplier=supplier)
    common = {"id": f"erp:{posting.sequence}", "source": SOURCE, "plant": posting.plant_id,
              "occurred": posting.posted_at, "lot": lot}  # fmt: skip
    facts = {"system": "ERP", "document": posting.document, "movementType": posting.movement_type}
    if posting.kind == "BATCH_CHANGE":
        return Event(type=EventType.LOT_STATUS_CHANGED, payload={**facts, "batchRestricted": posting.batch_restricted},
                     **common)  # fmt: skip
    if posting.movement_type in SCRAP_MOVEMENTS:
        payload = {**facts, "quantity": posting.quantity, "unit": posting.unit}
        return Event(type=EventType.SCRAP_CONFIRMED, payload=payload, **common)
    if posting.stock_status is not None and posting.movement_type not in {"101", "261"}:
        payload = {**facts, "stockStatus": posting.stock_status.value, "quantity": posting.quantity}
        return Event(type=EventType.LOT_STATUS_CHANGED, payload=payload, **common)
    return None


class ErpChangeFeed:
    name = "erp_poll"

    def __init__(self, upstream: Upstream, events: Events, cursors: IngestCursors, interval: float) -> None:
        self.upstream = upstream
        self.events = events
        self.cursors = cursors
        self.interval = interval
        self.status = "starting"  # then "ok", or why the last poll failed
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="lotgraph-erp-poll")

    async def _loop(self) -> None:
        while True:
            try:
                while await self.poll() == PAGE:
                    pass  # a full page: there may be more right away
                self.status = "ok"
            except GatewayError as exc:
                self.status = f"failing: {exc.code}"
                log.warning("polling the ERP change feed failed (%s): %s", exc.code, exc)
            except Exception as exc:
                self.status = f"failing: {exc.__class__.__name__}"
                log.exception("polling the ERP change feed failed")
            await asyncio.sleep(self.interval)

    async def poll(self) -> int:
        """Read one page after the stored cursor, take its events into the inbox, then advance the cursor; the page
        size."""
        after = int(await self.cursors.get(SOURCE) or 0)
        postings: list[ErpPosting] = await self.upstream.call(
            SOURCE, "change.read", ChangeQuery(after=after, limit=PAGE)
        )
        batches = await Loaders(self.upstream).batch.load_many(list(dict.fromkeys(p.lot_id for p in postings)))
        suppliers = {batch.id: batch.supplier_id for batch in batches if batch is not None}
        for posting in postings:
            if (event := to_event(posting, suppliers.get(posting.lot_id))) is not None:
                await self.events.ingest(event)
            else:
                self.events.metrics.events_ingested.labels(
                    SOURCE, posting.movement_type or posting.kind, "ignored"
                ).inc()
        if postings:
            await self.cursors.put(SOURCE, str(postings[-1].sequence))
        return len(postings)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
