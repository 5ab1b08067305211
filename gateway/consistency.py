"""What each system believes about a lot, side by side, and where they disagree.

Each system's statement (a quality status or a stock status) is reduced to what it lets people do with
the stock: use it, wait for inspection, or keep it blocked. The lot is consistent when every system
that says something says the same thing; otherwise each disagreement is spelled out against the
system of record for quality (QMS), or against ERP where QMS has no record, and given its kind: what the
disagreeing system lets people do while the reference says otherwise (`AVAILABLE_WHILE_BLOCKED` is stock that
can be shipped although quality blocks it). A query of one lot and the reconciliation sweep of a whole plant
(`gateway/reconcile/`) judge by this one definition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.errors import GatewayError
from gateway.model import ErpStock, QualityStatus, StockPosition, StockStatus, System
from gateway.reads import Loaders

# What a quality status allows, expressed as the stock status it should have everywhere.
EXPECTED_STOCK = {
    QualityStatus.RELEASED: StockStatus.AVAILABLE,
    QualityStatus.IN_INSPECTION: StockStatus.QUALITY_INSPECTION,
    QualityStatus.ON_HOLD: StockStatus.BLOCKED,
    QualityStatus.REJECTED: StockStatus.BLOCKED,
}
# When a lot's stock is split, the most usable part is what can still be picked, shipped or sold.
_USABILITY = [StockStatus.AVAILABLE, StockStatus.QUALITY_INSPECTION, StockStatus.BLOCKED]


@dataclass(frozen=True)
class SystemView:
    system: System
    quality_status: QualityStatus | None = None
    stock_status: StockStatus | None = None
    error_code: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error_code is None

    @property
    def stance(self) -> StockStatus | None:
        """What this system lets people do with the lot, or None when it says nothing."""
        if self.quality_status is not None:
            return EXPECTED_STOCK[self.quality_status]
        return self.stock_status

    def describe(self) -> str:
        if self.quality_status is not None:
            return f"{self.system.value} reports {self.quality_status.value}"
        return f"{self.system.value} holds stock as {self.stock_status.value if self.stock_status else 'none'}"


class DivergenceKind(StrEnum):
    """What a disagreeing system lets people do, while the reference (QMS) says the lot should be otherwise."""

    AVAILABLE_WHILE_BLOCKED = "AVAILABLE_WHILE_BLOCKED"
    AVAILABLE_WHILE_IN_INSPECTION = "AVAILABLE_WHILE_IN_INSPECTION"
    IN_INSPECTION_WHILE_BLOCKED = "IN_INSPECTION_WHILE_BLOCKED"
    IN_INSPECTION_WHILE_AVAILABLE = "IN_INSPECTION_WHILE_AVAILABLE"
    BLOCKED_WHILE_AVAILABLE = "BLOCKED_WHILE_AVAILABLE"
    BLOCKED_WHILE_IN_INSPECTION = "BLOCKED_WHILE_IN_INSPECTION"


_STANCE = {
    StockStatus.AVAILABLE: "AVAILABLE",
    StockStatus.QUALITY_INSPECTION: "IN_INSPECTION",
    StockStatus.BLOCKED: "BLOCKED",
}


@dataclass(frozen=True)
class Disagreement:
    """One system disagreeing with the reference system about the lot."""

    reference: SystemView
    view: SystemView

    @property
    def kind(self) -> DivergenceKind:
        assert self.view.stance is not None and self.reference.stance is not None
        return DivergenceKind(f"{_STANCE[self.view.stance]}_WHILE_{_STANCE[self.reference.stance]}")

    def describe(self) -> str:
        return f"{self.reference.describe()}, but {self.view.describe()}"


@dataclass(frozen=True)
class Consistency:
    systems: tuple[SystemView, ...]
    findings: tuple[Disagreement, ...]

    @property
    def disagreements(self) -> tuple[str, ...]:
        return tuple(finding.describe() for finding in self.findings)

    @property
    def kinds(self) -> tuple[DivergenceKind, ...]:
        return tuple(dict.fromkeys(finding.kind for finding in self.findings))

    @property
    def consistent(self) -> bool | None:
        """False on any disagreement; True when every system answered alike; None when one could not be asked."""
        if self.findings:
            return False
        return True if all(view.reachable for view in self.systems if view.system in JUDGED) else None


def most_usable(statuses: Iterable[StockStatus]) -> StockStatus | None:
    present = set(statuses)
    return next((status for status in _USABILITY if status in present), None)


async def _view(system: System, fetch: Awaitable[Any], read: Any) -> SystemView:
    try:
        return SystemView(system, **read(await fetch))
    except GatewayError as exc:
        return SystemView(system, error_code=exc.code)


def _erp(stock: list[ErpStock]) -> dict[str, Any]:
    return {"stock_status": most_usable(row.status for row in stock if row.quantity > 0)}


def _wms(positions: list[StockPosition]) -> dict[str, Any]:
    return {"stock_status": most_usable(p.status for p in positions if p.quantity > 0)}


def _quality(record: Any) -> dict[str, Any]:
    return {"quality_status": record.status if record else None}


async def assess(loaders: Loaders, lot_id: str, *, judged_only: bool = False) -> Consistency:
    """What each system says about the lot and where they disagree. `judged_only`: leave MES, shown for reference
    only, unasked (the reconciliation sweep, which costs the plant a request per source and page)."""
    views = [
        _view(System.ERP, loaders.erp_stock.load(lot_id), _erp),
        _view(System.QMS, loaders.lot_quality.load(lot_id), _quality),
        _view(System.WMS, loaders.stock_positions.load(lot_id), _wms),
    ]
    if not judged_only:
        views.append(_view(System.MES, loaders.mes_lot.load(lot_id), _quality))
    gathered = await asyncio.gather(*views)
    return Consistency(systems=tuple(gathered), findings=tuple(disagreements(gathered)))


# Systems of record for quality (QMS) and stock (WMS, ERP). MES owns execution and genealogy; its lot status
# is shown beside them for reference, but a hold or release is not its business, so it is not judged.
JUDGED = {System.QMS, System.WMS, System.ERP}


def disagreements(views: Iterable[SystemView]) -> list[Disagreement]:
    speaking = [view for view in views if view.stance is not None and view.system in JUDGED]
    if not speaking:
        return []
    reference = next((v for v in speaking if v.system is System.QMS), speaking[0])
    return [
        Disagreement(reference, view)
        for view in speaking
        if view is not reference and view.stance is not reference.stance
    ]
