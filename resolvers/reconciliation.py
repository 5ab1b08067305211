"""Reconciliation's side of the graph: the divergent lots a caller may read (`gateway/reconcile/service.py`), and
repairing one as the request's principal (`gateway/operations/service.py`)."""

from __future__ import annotations

from gateway.reconcile.service import DivergentPage
from gateway.store.operations import Operation
from resolvers.context import GatewayContext


async def page(
    ctx: GatewayContext, *, first: int, after: str | None, plant: str | None, kind: str | None, older_than: int | None
) -> DivergentPage:
    return await ctx.runtime.reconciliation.page(
        ctx.guard, first=first, after=after, plant=plant, kind=kind, older_than=older_than
    )


async def repair_lot(ctx: GatewayContext, lot_id: str, reason: str, key: str) -> Operation:
    operations = ctx.runtime.operations
    return await operations.repair_lot(ctx.principal, lot_id, reason, key, correlation_id=ctx.correlation_id)
