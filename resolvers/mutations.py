"""Quality holds and releases as governed operations: validate the input, ask the policies (with the
lot's attributes and the release evidence as Cedar context), audit the decision, record the operation
under its idempotency key, then run it across QMS, WMS and ERP."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway import consistency, genealogy
from gateway.context import GatewayContext
from gateway.errors import BadUserInput, Forbidden, LotDivergent, NotFound
from gateway.model import HoldStatus, NonconformanceState
from gateway.operations.plans import DISPOSITION_STEPS, HOLD_STEPS, RELEASE_STEPS, plan
from gateway.store.operations import NEEDS_ATTENTION, Operation, OperationState, StepState
from policies import entities
from policies.engine import Decision, Entity

SIGNATURE_WINDOW_SECONDS = 300


def _required(**fields: str) -> None:
    for name, value in fields.items():
        if not value or not value.strip():
            raise BadUserInput(f"{name} must not be empty", argument=name)


async def _audit(
    ctx: GatewayContext, action: str, resource: str, decision: Decision, details: Mapping[str, Any],
    about: Entity | None = None,
) -> None:  # fmt: skip
    """`about`: the Lot or Operation decided on, whose plants and suppliers scope who may read the entry."""
    plants, suppliers = entities.plants_and_suppliers(about) if about is not None else (None, None)
    await ctx.runtime.opened_store.audit.append(
        plants=plants,
        suppliers=suppliers,
        actor=ctx.principal.sub,
        action=action,
        resource=resource,
        decision="ALLOW" if decision.allowed else "DENY",
        reason=decision.explanation,
        policy_ids=decision.policy_ids,
        details=details,
        correlation_id=ctx.correlation_id,
    )


async def _governed(
    ctx: GatewayContext,
    action: str,
    resources: Sequence[Entity],
    context: Mapping[str, Any],
    payload: Mapping[str, Any],
) -> None:
    """Decide for every resource; audit each decision; refuse the whole request if any is denied."""
    denied: Decision | None = None
    for resource in resources:
        decision = ctx.guard.decide(action, resource, dict(context))
        await _audit(ctx, action, f"Lot::{resource.id}", decision, {"input": payload, "context": context}, resource)
        if not decision.allowed and denied is None:
            denied = decision
    if denied is not None:
        raise Forbidden(denied.explanation, policy_ids=denied.policy_ids, action=action, resource="Lot")


async def _start(
    ctx: GatewayContext, kind: str, key: str, payload: Mapping[str, Any], lot_ids: Sequence[str],
    steps: Sequence[tuple[str, str]], extra: Mapping[str, Any] | None = None,
) -> Operation:  # fmt: skip
    operations = ctx.runtime.operations
    op, _created = await operations.store.claim(
        kind=kind,
        actor=ctx.principal.sub,
        idempotency_key=key,
        payload=payload,
        extra=extra or {},
        steps=plan(steps, lot_ids),
        correlation_id=ctx.correlation_id,
    )
    # A repeated request (`created` False) gets the first one's operation, once any run in progress is done;
    # a completed operation is not run again.
    return await operations.executor.run(op.id)


async def place_quality_hold(ctx: GatewayContext, lot_id: str, reason_code: str, reason: str, key: str) -> Operation:
    _required(lotId=lot_id, reasonCode=reason_code, reason=reason, idempotencyKey=key)
    payload = {"lotId": lot_id, "reasonCode": reason_code, "reason": reason}
    resource = await ctx.guard.lot_entity(lot_id, for_change=True)
    await _governed(ctx, "placeQualityHold", [resource], {}, payload)
    return await _start(ctx, "placeQualityHold", key, payload, [lot_id], HOLD_STEPS)


async def place_recall_hold(
    ctx: GatewayContext, lot_id: str, direction: genealogy.Direction, max_depth: int, reason: str, key: str
) -> Operation:
    _required(lotId=lot_id, reason=reason, idempotencyKey=key)
    if not 1 <= max_depth <= ctx.settings.max_genealogy_depth:
        raise BadUserInput(f"maxDepth must be between 1 and {ctx.settings.max_genealogy_depth}", argument="maxDepth")
    payload = {"lotId": lot_id, "direction": direction.value, "maxDepth": max_depth, "reason": reason,
               "reasonCode": "RECALL"}  # fmt: skip
    existing = await ctx.runtime.operations.store.by_key(ctx.principal.sub, key)
    if existing is not None and existing.kind == "placeRecallHold":
        lot_ids = list(dict.fromkeys(step.lot_id for step in existing.steps))
    else:
        walk = await genealogy.walk(ctx.upstream, lot_id, direction, max_depth)
        lot_ids = list(walk.nodes)
    resources = await _entities(ctx, lot_ids)
    await _governed(ctx, "placeRecallHold", resources, {}, payload)
    return await _start(ctx, "placeRecallHold", key, payload, lot_ids, HOLD_STEPS)


async def _entities(ctx: GatewayContext, lot_ids: Sequence[str]) -> list[Entity]:
    return list(await asyncio.gather(*(ctx.guard.lot_entity(lot_id, for_change=True) for lot_id in lot_ids)))


async def release_evidence(ctx: GatewayContext, lot_id: str, justification: str) -> dict[str, Any]:
    """What the release rules look at, read fresh from the systems of record (never from the cache, whose
    stale-if-error entries may predate a failed inspection or a new nonconformance), and the caller's token.
    If QMS cannot answer, the release is refused with its error."""
    fresh = ctx.loaders.fresh
    inspections, nonconformances = await asyncio.gather(
        fresh.inspections.load(lot_id), fresh.nonconformances.load(lot_id)
    )
    latest = max(inspections, key=lambda i: i.created_at, default=None)
    age = ctx.principal.auth_age_seconds(datetime.now(UTC))
    return {
        "mfa": ctx.principal.has_mfa,
        "authAgeSeconds": age if age is not None else 2**31,
        "justified": bool(justification.strip()),
        "latestInspectionPassed": latest is not None and latest.passed,
        "openNonconformances": sum(1 for nc in nonconformances if nc.state is not NonconformanceState.CLOSED),
    }


async def release_quality_hold(ctx: GatewayContext, hold_id: str, justification: str, key: str) -> Operation:
    _required(holdId=hold_id, idempotencyKey=key)
    payload = {"holdId": hold_id, "justification": justification}
    hold = await ctx.loaders.fresh.hold.load(hold_id)
    if hold is None:
        raise NotFound(f"no hold '{hold_id}'", argument="holdId")
    existing = await ctx.runtime.operations.store.by_key(ctx.principal.sub, key)
    if hold.status is not HoldStatus.ACTIVE and existing is None:
        raise BadUserInput(f"hold {hold_id} is not active (it is {hold.status.value})", argument="holdId")
    resource = await ctx.guard.lot_entity(hold.lot_id, for_change=True)
    evidence = await release_evidence(ctx, hold.lot_id, justification)
    await _governed(ctx, "releaseQualityHold", [resource], evidence, payload)
    return await _start(
        ctx, "releaseQualityHold", key, payload, [hold.lot_id], RELEASE_STEPS,
        extra={"signature": _signature(ctx, "RELEASE")},
    )  # fmt: skip


def _signature(ctx: GatewayContext, meaning: str) -> dict[str, Any]:
    """The signed record 21 CFR Part 11 §11.50 asks for: printed name, date and time, and meaning."""
    return {
        "signerName": ctx.principal.name,
        "signerId": ctx.principal.sub,
        "signedAt": datetime.now(UTC).isoformat(),
        "meaning": meaning,
        "authenticatedWith": sorted(ctx.principal.amr),
    }


async def disposition_lot(ctx: GatewayContext, lot_id: str, decision: str, reason: str, key: str) -> Operation:
    _required(lotId=lot_id, idempotencyKey=key)
    if decision not in DISPOSITION_STEPS:
        raise BadUserInput(f"decision must be one of {', '.join(DISPOSITION_STEPS)}", argument="decision")
    payload = {"lotId": lot_id, "decision": decision, "reason": reason}
    resource = await ctx.guard.lot_entity(lot_id, for_change=True)
    evidence = {**await release_evidence(ctx, lot_id, reason), "decision": decision}
    await _governed(ctx, "dispositionLot", [resource], evidence, payload)
    return await _start(
        ctx, "dispositionLot", key, payload, [lot_id], DISPOSITION_STEPS[decision],
        extra={"signature": _signature(ctx, decision)},
    )  # fmt: skip


async def _operation(ctx: GatewayContext, op_id: str) -> Operation:
    op = await ctx.runtime.operations.store.get(op_id)
    if op is None:
        raise NotFound(f"no operation '{op_id}'", argument="id")
    return op


async def _operator(
    ctx: GatewayContext, action: str, op_id: str, details: Mapping[str, Any], states: Sequence[OperationState]
) -> Operation:
    """Operator actions on an operation: allowed to QA managers of every plant of its lots, audited either way."""
    op = await _operation(ctx, op_id)
    resource = await ctx.guard.operation_entity(op)
    decision = ctx.guard.decide("manageOperations", resource)
    await _audit(ctx, action, f"Operation::{op_id}", decision, details, resource)
    if not decision.allowed:
        raise Forbidden(decision.explanation, policy_ids=decision.policy_ids, action=action, resource="Operation")
    if op.state not in states:
        wanted = " or ".join(state.value for state in states)
        raise BadUserInput(f"operation {op_id} is {op.state.value}, not {wanted}", argument="id")
    return op


async def retry_operation(ctx: GatewayContext, op_id: str) -> Operation:
    # A BLOCKED operation was refused before it started: retrying it would bypass that decision. A FAILED one was
    # refused by a system; the operator retries it once the cause is fixed, and its failed steps run again.
    op = await _operator(ctx, "retryOperation", op_id, {}, [OperationState.PENDING, OperationState.FAILED])
    if op.state is OperationState.FAILED:
        await ctx.runtime.operations.store.reopen(op_id)
    return await ctx.runtime.operations.executor.run(op_id)


async def _refuse_half_applied(ctx: GatewayContext, op: Operation) -> None:
    """Abandoning leaves every system as it is and nothing resumes the operation, so it is refused while a lot
    the operation already changed somewhere has systems that disagree (held in QMS, available in WMS) or cannot
    all be asked: that lot would stay half held, or half released, with no one told. Once the lot's systems
    agree again (the missing step done by hand, or a reconciliation), the operation can be abandoned."""
    changed = list(dict.fromkeys(step.lot_id for step in op.steps if step.state is StepState.DONE))
    assessed = await asyncio.gather(*(consistency.assess(ctx.loaders.fresh, lot_id) for lot_id in changed))
    unsettled = {lot_id: c for lot_id, c in zip(changed, assessed, strict=True) if c.consistent is not True}
    if unsettled:
        raise LotDivergent(
            f"operation {op.id} is partly applied and the systems of {', '.join(unsettled)} do not agree "
            "(or could not all be asked): abandoning it would leave them so; let it complete, or bring the "
            "systems into agreement first",
            operationId=op.id,
            lots=[{"lotId": lot_id, "consistent": c.consistent, "disagreements": list(c.disagreements)}
                  for lot_id, c in unsettled.items()],
        )  # fmt: skip


async def abandon_operation(ctx: GatewayContext, op_id: str, reason: str) -> Operation:
    _required(reason=reason)
    op = await _operator(ctx, "abandonOperation", op_id, {"reason": reason}, NEEDS_ATTENTION)
    await _refuse_half_applied(ctx, op)
    left = [f"{s.system}:{s.lot_id}" for s in op.steps if s.state.value == "PENDING"]
    await ctx.runtime.operations.store.finish(
        op_id, OperationState.ABANDONED, error=f"abandoned: {reason}; not done: {left}"
    )
    return await _operation(ctx, op_id)
