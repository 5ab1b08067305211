"""A plant's reconciliation sweep: every lot of the plant, page by page, judged by `gateway/consistency.py` (the
one definition of consistent), each divergent lot recorded and each lot found consistent again resolved.

A page costs what a 100-lot page of `lots` costs: one ERP batch page (`erp.batch.list`, keyed after the last lot
checked, so lots arriving meanwhile cannot shift it), then one batched read per source of the page's lots (ERP
booked stock, QMS quality status, WMS stock positions; MES is not judged, so not asked). The cursor is stored
after every page: a restarted gateway carries on where the last one stopped. A source that cannot answer stops the
sweep at that page (nothing judged on half the evidence); the next round starts from the same cursor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from gateway.consistency import Consistency, assess
from gateway.contracts.erp import AllOf, BatchQuery, LotPage
from gateway.model import Lot, Plant, System
from gateway.reads import Loaders
from gateway.reconcile.settings import ReconciliationSettings
from gateway.settings import Sources
from gateway.store.divergence import DivergentLot, DivergentLots, Finding, Recorded
from gateway.store.sweeps import Sweeps, SweepState
from gateway.telemetry import Metrics
from gateway.upstream import Upstream

SWEPT_SOURCES = ("erp", "qms", "wms")


def budgeted(sources: Sources, settings: ReconciliationSettings) -> Sources:
    """The sources as the sweep reaches them: the same systems and credentials, each with the sweep's own rate
    limit (one request at a time, no burst) and a small bulkhead, in connectors of its own."""
    changed = {}
    for name in SWEPT_SOURCES:
        source = getattr(sources, name)
        resilience = source.resilience.model_copy(update={
            "rate_limit_rps": getattr(settings.requests_per_second, name), "rate_limit_burst": 1, "max_concurrent": 4,
        })  # fmt: skip
        changed[name] = source.model_copy(update={"resilience": resilience})
    return sources.model_copy(update=changed)


def finding(lot: Lot, consistency: Consistency) -> Finding:
    quality = next((v.quality_status for v in consistency.systems if v.system is System.QMS), None)
    return Finding(
        lot_id=lot.id, plant=lot.plant_id, material=lot.material_id, supplier=lot.supplier_id,
        quality_status=quality.value if quality else None, kinds=tuple(kind.value for kind in consistency.kinds),
        statements={
            "systems": [
                {"system": v.system.value, "qualityStatus": v.quality_status.value if v.quality_status else None,
                 "stockStatus": v.stock_status.value if v.stock_status else None}
                for v in consistency.systems
            ],
            "disagreements": list(consistency.disagreements),
        },
    )  # fmt: skip


async def judge(loaders: Loaders, lots: Sequence[Lot]) -> tuple[list[Finding], list[str]]:
    """The divergent lots among `lots` and the ids of those whose systems agree. The page's reads go out first,
    together (one batch per source), so a source that cannot answer raises its error here rather than leaving
    lots half judged."""
    ids = [lot.id for lot in lots]
    await asyncio.gather(
        loaders.erp_stock.load_many(ids), loaders.lot_quality.load_many(ids), loaders.stock_positions.load_many(ids)
    )
    assessed = await asyncio.gather(*(assess(loaders, lot_id, judged_only=True) for lot_id in ids))
    found = [finding(lot, c) for lot, c in zip(lots, assessed, strict=True) if c.consistent is False]
    return found, [lot.id for lot, c in zip(lots, assessed, strict=True) if c.consistent]


@dataclass
class Progress:
    """How a sweep of one plant is going, told after every page (the CLI prints it)."""

    plant: str
    checked: int
    total: int | None
    divergent_found: int = 0
    resolved: int = 0
    forgotten: int = 0  # resolved divergences past their retention, deleted when the sweep completed
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SWEPT_SOURCES, 0))
    seconds: float = 0.0
    completed: bool = False


class Sweep:
    """Sweeps plants through the sweep's own budgeted `upstream`, recording into the store."""

    def __init__(
        self, upstream: Upstream, divergent: DivergentLots, sweeps: Sweeps, settings: ReconciliationSettings,
        metrics: Metrics,
    ) -> None:  # fmt: skip
        self.upstream = upstream
        self.divergent = divergent
        self.sweeps = sweeps
        self.settings = settings
        self.metrics = metrics

    async def plants(self) -> list[str]:
        """The configured plants; `*`: every plant the ERP lists."""
        if "*" not in self.settings.plants:
            return list(self.settings.plants)
        plants: list[Plant] = await self.upstream.call("erp", "plant.list", AllOf())
        return [plant.id for plant in plants]

    async def run(
        self, plant: str, *, on_page: Callable[[Progress], None] | None = None,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> Progress:  # fmt: skip
        """Sweep `plant` from its stored cursor (a new sweep if none is under way) until every lot is checked, or
        `keep_going` says stop (the sweeper lost its lease), or a source fails (raised, the cursor kept)."""
        state = await self.sweeps.get(plant)
        if not state.under_way:
            await self.sweeps.begin(plant)
            state = await self.sweeps.get(plant)
        progress = Progress(plant, state.checked, state.total)
        started = time.perf_counter()
        cursor = state.cursor
        try:
            while keep_going():
                sent = self._sent()
                page = await self._page(plant, cursor)
                recorded = Recorded([], [])
                if page.lots:
                    found, consistent = await judge(Loaders(self.upstream, cached=False), page.lots)
                    recorded = await self.divergent.record(found, consistent)
                self._count(progress, page, recorded, sent)
                if len(page.lots) < self.settings.page_size:
                    await self.sweeps.complete(plant, progress.checked)
                    progress.completed = True
                    retention = timedelta(days=self.settings.resolved_retention_days)
                    progress.forgotten = await self.divergent.forget_resolved(plant, retention)
                    self._completed(plant, state)
                    break
                cursor = page.lots[-1].id
                await self.sweeps.advance(plant, cursor, progress.checked, progress.total or 0)
                if on_page is not None:
                    on_page(progress)
        except Exception as exc:
            await self.sweeps.interrupted(plant, f"{getattr(exc, 'code', exc.__class__.__name__)}: {exc}")
            raise
        finally:
            progress.seconds = time.perf_counter() - started
        if on_page is not None and progress.completed:
            on_page(progress)
        return progress

    async def _page(self, plant: str, after: str | None) -> LotPage:
        query = BatchQuery(plants=(plant,), after=after, top=self.settings.page_size, skip=0)
        (page,) = await self.upstream.call("erp", "batch.list", query)
        return page

    def _sent(self) -> dict[str, int]:
        return {name: getattr(self.upstream.connectors, name).guarded.sent for name in SWEPT_SOURCES}

    def _count(self, progress: Progress, page: LotPage, recorded: Recorded, before: dict[str, int]) -> None:
        """The page in the sweep's progress and metrics (its requests per source, what it found)."""
        progress.checked += len(page.lots)
        progress.total = progress.checked - len(page.lots) + page.total  # `total`: the lots from this page on
        progress.divergent_found += len(recorded.opened)
        progress.resolved += len(recorded.resolved)
        for name, count in self._sent().items():
            progress.requests[name] += count - before[name]
            self.metrics.sweep_requests.labels(progress.plant, name).inc(count - before[name])
        self.metrics.sweep_lots.labels(progress.plant).inc(len(page.lots))
        share = progress.checked / progress.total if progress.total else 1.0
        self.metrics.sweep_progress.labels(progress.plant).set(share)
        observe_resolved(self.metrics, recorded.resolved)

    def _completed(self, plant: str, state: SweepState) -> None:
        if state.started_at is not None:
            self.metrics.sweep_seconds.labels(plant).observe(time.time() - state.started_at.timestamp())
        self.metrics.sweep_completed.labels(plant).set(time.time())


def observe_resolved(metrics: Metrics, resolved: Iterable[DivergentLot]) -> None:
    """How long each resolved divergence lasted, into its plant's histogram."""
    for entry in resolved:
        metrics.divergence_seconds.labels(entry.plant).observe(entry.divergent_for.total_seconds())
