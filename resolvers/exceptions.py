"""The exception queue's side of the graph: each field calls the exception service (`gateway/exceptions.py`) as
the request's principal, under its correlation id."""

from __future__ import annotations

from gateway.exceptions import ExceptionPage
from gateway.store.exceptions import ExceptionEntry, ExceptionKind, ExceptionState
from resolvers.context import GatewayContext


async def page(
    ctx: GatewayContext, *, first: int, after: str | None, kind: ExceptionKind | None, state: ExceptionState | None,
    plant: str | None, lot_id: str | None,
) -> ExceptionPage:  # fmt: skip
    return await ctx.runtime.exceptions.page(
        ctx.guard, first=first, after=after, kind=kind, state=state, plant=plant, lot_id=lot_id
    )


async def retry(ctx: GatewayContext, entry_id: str) -> ExceptionEntry:
    return await ctx.runtime.exceptions.retry(ctx.principal, entry_id, correlation_id=ctx.correlation_id)


async def discard(ctx: GatewayContext, entry_id: str, reason: str) -> ExceptionEntry:
    return await ctx.runtime.exceptions.discard(ctx.principal, entry_id, reason, correlation_id=ctx.correlation_id)
