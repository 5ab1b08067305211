"""The mutations' side of the governed operations: each calls the operations service
(`gateway/operations/service.py`) as the request's principal, under its correlation id."""

from __future__ import annotations

from gateway.genealogy import Direction
from gateway.store.operations import Operation
from resolvers.context import GatewayContext


async def place_quality_hold(ctx: GatewayContext, lot_id: str, reason_code: str, reason: str, key: str) -> Operation:
    return await ctx.runtime.operations.place_quality_hold(
        ctx.principal, lot_id, reason_code, reason, key, correlation_id=ctx.correlation_id
    )


async def place_recall_hold(
    ctx: GatewayContext, lot_id: str, direction: Direction, max_depth: int, reason: str, key: str
) -> Operation:
    return await ctx.runtime.operations.place_recall_hold(
        ctx.principal, lot_id, direction, max_depth, reason, key, correlation_id=ctx.correlation_id
    )


async def release_quality_hold(ctx: GatewayContext, hold_id: str, justification: str, key: str) -> Operation:
    return await ctx.runtime.operations.release_quality_hold(
        ctx.principal, hold_id, justification, key, correlation_id=ctx.correlation_id
    )


async def disposition_lot(ctx: GatewayContext, lot_id: str, decision: str, reason: str, key: str) -> Operation:
    return await ctx.runtime.operations.disposition_lot(
        ctx.principal, lot_id, decision, reason, key, correlation_id=ctx.correlation_id
    )


async def retry_operation(ctx: GatewayContext, op_id: str) -> Operation:
    return await ctx.runtime.operations.retry(ctx.principal, op_id, correlation_id=ctx.correlation_id)


async def abandon_operation(ctx: GatewayContext, op_id: str, reason: str) -> Operation:
    return await ctx.runtime.operations.abandon(ctx.principal, op_id, reason, correlation_id=ctx.correlation_id)
