"""The governed operations service: quality holds, recalls, releases, dispositions, repairs of divergent lots,
and operator actions on stuck operations. GraphQL mutations and the automatic reactions (containment) both call
it, with the principal who acts and plain values.

Every command validates its input, asks Cedar about every lot concerned (the lot's attributes from the reads,
the release evidence read fresh from the systems of record as Cedar context), audits each decision, records the
operation under the principal's idempotency key, then runs it across QMS, WMS and ERP (`executor.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.auth import Principal
from gateway.authz import Guard
from gateway.consistency import assess
from gateway.contracts.base import BULK_ITEMS
from gateway.errors import BadUserInput, Forbidden, LotDivergent, NotFound
from gateway.events.envelope import Event
from gateway.events.hub import Events
from gateway.genealogy import Direction, walk
from gateway.model import HoldStatus, NonconformanceState, QualityStatus
from gateway.operations.announcements import Announcer
from gateway.operations.executor import Executor, Resumer
from gateway.operations.kpis import AWAITING_QUALIFIED_PERSON, Kpis
from gateway.operations.plans import DISPOSITION_STEPS, FOLLOW_QMS_STEPS, HOLD_STEPS, RELEASE_STEPS, plan
from gateway.reads import Loaders
from gateway.store import Store
from gateway.store.audit import AuditLog, entry_row
from gateway.store.exceptions import ExceptionKind, ExceptionQueue, ExceptionState
from gateway.store.operations import NEEDS_ATTENTION, Operation, OperationState, OperationStore, StepState
from gateway.telemetry import Metrics
from gateway.upstream import Upstream
from policies import entities
from policies.engine import Decision, Entity, PolicyEngine


def required(**fields: str) -> None:
    for name, value in fields.items():
        if not value or not value.strip():
            raise BadUserInput(f"{name} must not be empty", argument=name)


@dataclass
class Operations:
    store: OperationStore
    executor: Executor
    resumer: Resumer
    upstream: Upstream
    policies: PolicyEngine
    audit: AuditLog
    max_genealogy_depth: int
    exceptions: ExceptionQueue
    kpis: Kpis
    # Told of every completed operation (after the service's own settling), e.g. reconciliation's re-check.
    observers: list[Callable[[Operation], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    def start(
        cls, upstream: Upstream, store: Store, retry_seconds: float, events: Events, policies: PolicyEngine,
        max_genealogy_depth: int, metrics: Metrics,
    ) -> Operations:  # fmt: skip
        operations = OperationStore(store.engine)
        executor = Executor(upstream, operations, store.audit, announce=Announcer(events, upstream).progressed,
                            exceptions=store.exceptions)  # fmt: skip
        resumer = Resumer(executor, retry_seconds)
        service = cls(operations, executor, resumer, upstream, policies, store.audit, max_genealogy_depth,
                      store.exceptions, Kpis(operations, metrics))  # fmt: skip
        executor.completed = service._completed
        resumer.start()
        return service

    async def stop(self) -> None:
        await self.resumer.stop()

    def command(self, principal: Principal, correlation_id: str) -> Command:
        """What `principal` does under `correlation_id`: decided by Cedar, audited (also the exception queue's)."""
        return Command(self, principal, correlation_id, Guard(self.policies, principal, Loaders(self.upstream)))

    async def place_quality_hold(
        self, principal: Principal, lot_id: str, reason_code: str, reason: str, key: str, correlation_id: str
    ) -> Operation:
        required(lotId=lot_id, reasonCode=reason_code, reason=reason, idempotencyKey=key)
        command = self.command(principal, correlation_id)
        payload = {"lotId": lot_id, "reasonCode": reason_code, "reason": reason}
        resource = await command.guard.lot_entity(lot_id, for_change=True)
        await command.governed("placeQualityHold", [resource], {}, payload)
        return await command.start("placeQualityHold", key, payload, [lot_id], HOLD_STEPS)

    async def place_recall_hold(
        self, principal: Principal, lot_id: str, direction: Direction, max_depth: int, reason: str, key: str,
        correlation_id: str,
    ) -> Operation:  # fmt: skip
        required(lotId=lot_id, reason=reason, idempotencyKey=key)
        if not 1 <= max_depth <= self.max_genealogy_depth:
            raise BadUserInput(f"maxDepth must be between 1 and {self.max_genealogy_depth}", argument="maxDepth")
        command = self.command(principal, correlation_id)
        payload = {"lotId": lot_id, "direction": direction.value, "maxDepth": max_depth, "reason": reason,
                   "reasonCode": "RECALL"}  # fmt: skip
        existing = await self.store.by_key(principal.sub, key)
        if existing is not None and existing.kind == "placeRecallHold":
            lot_ids = list(dict.fromkeys(step.lot_id for step in existing.steps))
        else:
            lot_ids = list((await walk(self.upstream, lot_id, direction, max_depth)).nodes)
        resources = await asyncio.gather(*(command.guard.lot_entity(lot, for_change=True) for lot in lot_ids))
        await command.governed("placeRecallHold", resources, {}, payload)
        return await command.start("placeRecallHold", key, payload, lot_ids, HOLD_STEPS)

    async def release_quality_hold(
        self, principal: Principal, hold_id: str, justification: str, key: str, correlation_id: str
    ) -> Operation:
        required(holdId=hold_id, idempotencyKey=key)
        command = self.command(principal, correlation_id)
        payload = {"holdId": hold_id, "justification": justification}
        hold = await command.guard.loaders.fresh.hold.load(hold_id)
        if hold is None:
            raise NotFound(f"no hold '{hold_id}'", argument="holdId")
        existing = await self.store.by_key(principal.sub, key)
        if hold.status is not HoldStatus.ACTIVE and existing is None:
            raise BadUserInput(f"hold {hold_id} is not active (it is {hold.status.value})", argument="holdId")
        resource = await command.guard.lot_entity(hold.lot_id, for_change=True)
        evidence = await command.release_evidence(hold.lot_id, justification)
        await command.governed("releaseQualityHold", [resource], evidence, payload)
        return await command.start(
            "releaseQualityHold", key, payload, [hold.lot_id], RELEASE_STEPS,
            extra={"signature": command.signature("RELEASE")},
        )  # fmt: skip

    async def disposition_lot(
        self, principal: Principal, lot_id: str, decision: str, reason: str, key: str, correlation_id: str
    ) -> Operation:
        required(lotId=lot_id, idempotencyKey=key)
        if decision not in DISPOSITION_STEPS:
            raise BadUserInput(f"decision must be one of {', '.join(DISPOSITION_STEPS)}", argument="decision")
        command = self.command(principal, correlation_id)
        payload = {"lotId": lot_id, "decision": decision, "reason": reason}
        resource = await command.guard.lot_entity(lot_id, for_change=True)
        evidence = {**await command.release_evidence(lot_id, reason), "decision": decision}
        await command.governed("dispositionLot", [resource], evidence, payload)
        return await command.start(
            "dispositionLot", key, payload, [lot_id], DISPOSITION_STEPS[decision],
            extra={"signature": command.signature(decision)},
        )  # fmt: skip

    async def repair_lot(
        self, principal: Principal, lot_id: str, reason: str, key: str, correlation_id: str
    ) -> Operation:
        """WMS and ERP brought in line with what QMS, the system of record for quality, says about the lot: the
        alignment steps of the workflows (`steps/alignment.py`), which read QMS when they run and never unblock
        what it blocks. Cedar decides with what QMS says now as context (a repair never makes regulated material
        available: that is a qualified person's signed release); one decided while QMS did not release the lot
        never makes it available either, even if QMS releases it before the steps run."""
        required(lotId=lot_id, reason=reason, idempotencyKey=key)
        command = self.command(principal, correlation_id)
        resource = await command.guard.lot_entity(lot_id, for_change=True)
        fresh = command.guard.loaders.fresh
        quality = await fresh.lot_quality.load(lot_id)
        status = quality.status.value if quality else "UNKNOWN"
        payload = {"lotId": lot_id, "reason": reason, "qualityStatus": status,
                   "direction": "release" if status == QualityStatus.RELEASED else "restrict"}  # fmt: skip
        await command.governed("repairLot", [resource], {"qualityStatus": status}, payload)  # before saying more
        if quality is None:
            raise NotFound(f"QMS has no record of lot {lot_id}: there is nothing to bring the systems in line with",
                           argument="lotId")  # fmt: skip
        found = await assess(fresh, lot_id, judged_only=True)
        if found.consistent is not False and await self.store.by_key(principal.sub, key) is None:
            raise BadUserInput(f"the systems of lot {lot_id} do not disagree (or could not all be asked): nothing to "
                               "repair", argument="lotId")  # fmt: skip
        return await command.start("repairLot", key, payload, [lot_id], FOLLOW_QMS_STEPS)

    async def _completed(self, op: Operation) -> None:
        """Told by the executor of every completed operation, whichever run (request, resumer) completed it."""
        await self._settle_awaited_releases(op)
        await self.kpis.completed(op)
        for observer in self.observers:
            await observer(op)

    async def _settle_awaited_releases(self, release: Operation) -> None:
        """Automation's releases Cedar left to a qualified person (a passed inspection of regulated material) are
        done once that person's signed release is: completed, naming it, so they leave `pendingOperations`."""
        if release.kind != "dispositionLot" or release.input.get("decision") != "RELEASE":
            return
        for op_id in await self.store.blocked_on_lot(AWAITING_QUALIFIED_PERSON, release.input["lotId"]):
            await self.store.finish(op_id, OperationState.COMPLETED,
                                    result={"releasedBy": release.actor, "operation": release.id})  # fmt: skip
            if self.executor.announce is not None:
                await self.executor.announce(await self.existing(op_id))

    async def automate(
        self, principal: Principal, action: str, event: Event, lot: Entity | str, payload: Mapping[str, Any],
        steps: Sequence[tuple[str, str]],
    ) -> Operation:  # fmt: skip
        """A workflow's operation on one lot, started by `event` and done as the service `principal`: the operation
        kind is the Cedar action, keyed by the event (a redelivered event finds the first operation and is decided
        once). Cedar's decision is audited with the event; a refusal is recorded BLOCKED with the policy's reason,
        visible in `pendingOperations` (for a regulated lot whose inspection passed, that is the lot waiting for a
        qualified person's release). `lot` is the lot's id, or its entity built from the event for a lot the
        systems do not know yet (an arriving one)."""
        command = self.command(principal, event.correlation_id)
        key = f"{action}:{event.id}"
        if (existing := await self.store.by_key(principal.sub, key)) is not None:
            return await self.executor.run(existing.id)
        if isinstance(lot, str):
            lot = await command.guard.lot_entity(lot, for_change=True)
        decision = command.guard.decide(action, lot)
        details = {"input": payload, "event": {"id": event.id, "type": event.type.value}}
        await command.audit(action, f"Lot::{lot.id}", decision, details, lot)
        # what the business KPIs measure from: the event's type and time, and its plant (`kpis.py`)
        extra = {"event": event.id, "eventType": event.type.value, "eventAt": event.occurred.isoformat(),
                 "plant": event.plant}  # fmt: skip
        if decision.allowed:
            return await command.start(action, key, payload, [lot.id], steps, extra=extra)
        op, created = await self.store.claim(
            kind=action, actor=principal.sub, idempotency_key=key, payload=payload, steps=plan(steps, [lot.id]),
            correlation_id=event.correlation_id, extra=extra,
            blocked=f"FORBIDDEN: {decision.explanation}",
        )  # fmt: skip
        if created and self.executor.announce is not None:
            await self.executor.announce(op)
        return op

    async def retry(self, principal: Principal, op_id: str, correlation_id: str) -> Operation:
        # A BLOCKED operation was refused before it started: retrying it would bypass that decision. A FAILED one was
        # refused by a system; the operator retries it once the cause is fixed, and its failed steps run again.
        command = self.command(principal, correlation_id)
        op = await command.operator("retryOperation", op_id, {}, [OperationState.PENDING, OperationState.FAILED])
        if op.state is OperationState.FAILED:
            await self.store.reopen(op_id)
        return await self.executor.run(op_id)

    async def abandon(self, principal: Principal, op_id: str, reason: str, correlation_id: str) -> Operation:
        required(reason=reason)
        command = self.command(principal, correlation_id)
        op = await command.operator("abandonOperation", op_id, {"reason": reason}, NEEDS_ATTENTION)
        await command.refuse_half_applied(op)
        left = [f"{s.system}:{s.lot_id}" for s in op.steps if s.state.value == "PENDING"]
        await self.store.finish(op_id, OperationState.ABANDONED, error=f"abandoned: {reason}; not done: {left}")
        await self.exceptions.settle(ExceptionKind.STEP, op_id, ExceptionState.DISCARDED, by=principal.sub,
                                     why=f"operation abandoned: {reason}")  # fmt: skip
        return await self.existing(op_id)

    async def existing(self, op_id: str) -> Operation:
        """The operation, or NOT_FOUND (naming the `id` argument)."""
        op = await self.store.get(op_id)
        if op is None:
            raise NotFound(f"no operation '{op_id}'", argument="id")
        return op


@dataclass
class Command:
    """One command of one principal: its decisions (with reads of its own, so nothing leaks between callers)
    and its audit entries, under its correlation id."""

    operations: Operations
    principal: Principal
    correlation_id: str
    guard: Guard

    async def audit(
        self, action: str, resource: str, decision: Decision, details: Mapping[str, Any], about: Entity | None = None
    ) -> None:
        """`about`: the Lot or Operation decided on, whose plants and suppliers scope who may read the entry."""
        await self.operations.audit.append_many([self.entry(action, resource, decision, details, about)])

    def entry(
        self, action: str, resource: str, decision: Decision, details: Mapping[str, Any], about: Entity | None
    ) -> dict[str, Any]:
        plants, suppliers = entities.plants_and_suppliers(about) if about is not None else (None, None)
        return entry_row(
            plants=plants,
            suppliers=suppliers,
            actor=self.principal.sub,
            action=action,
            resource=resource,
            decision="ALLOW" if decision.allowed else "DENY",
            reason=decision.explanation,
            policy_ids=decision.policy_ids,
            details=details,
            correlation_id=self.correlation_id,
        )

    async def governed(
        self, action: str, resources: Sequence[Entity], context: Mapping[str, Any], payload: Mapping[str, Any]
    ) -> None:
        """Decide for every resource (one Cedar batch); audit each decision (one transaction per `BULK_ITEMS` lots);
        refuse the whole request if any is denied."""
        decisions = self.guard.decide_all(action, resources, dict(context))
        details = {"input": payload, "context": context}
        entries = [self.entry(action, f"Lot::{resource.id}", decision, details, resource)
                   for resource, decision in zip(resources, decisions, strict=True)]  # fmt: skip
        for start in range(0, len(entries), BULK_ITEMS):
            await self.operations.audit.append_many(entries[start : start + BULK_ITEMS])
        if denied := next((decision for decision in decisions if not decision.allowed), None):
            raise Forbidden(denied.explanation, policy_ids=denied.policy_ids, action=action, resource="Lot")

    async def start(
        self, kind: str, key: str, payload: Mapping[str, Any], lot_ids: Sequence[str],
        steps: Sequence[tuple[str, str]], extra: Mapping[str, Any] | None = None,
    ) -> Operation:  # fmt: skip
        op, _created = await self.operations.store.claim(
            kind=kind,
            actor=self.principal.sub,
            idempotency_key=key,
            payload=payload,
            extra=extra or {},
            steps=plan(steps, lot_ids),
            correlation_id=self.correlation_id,
        )
        # A repeated request (`created` False) gets the first one's operation, once any run in progress is done;
        # a completed operation is not run again.
        return await self.operations.executor.run(op.id)

    async def release_evidence(self, lot_id: str, justification: str) -> dict[str, Any]:
        """What the release rules look at, read fresh from the systems of record (never from the cache, whose
        stale-if-error entries may predate a failed inspection or a new nonconformance), and the caller's token.
        If QMS cannot answer, the release is refused with its error."""
        fresh = self.guard.loaders.fresh
        inspections, nonconformances = await asyncio.gather(
            fresh.inspections.load(lot_id), fresh.nonconformances.load(lot_id)
        )
        latest = max(inspections, key=lambda i: i.created_at, default=None)
        age = self.principal.auth_age_seconds(datetime.now(UTC))
        return {
            "mfa": self.principal.has_mfa,
            "authAgeSeconds": age if age is not None else 2**31,
            "justified": bool(justification.strip()),
            "latestInspectionPassed": latest is not None and latest.passed,
            "openNonconformances": sum(1 for nc in nonconformances if nc.state is not NonconformanceState.CLOSED),
        }

    def signature(self, meaning: str) -> dict[str, Any]:
        """The signed record 21 CFR Part 11 §11.50 asks for: printed name, date and time, and meaning."""
        return {
            "signerName": self.principal.name,
            "signerId": self.principal.sub,
            "signedAt": datetime.now(UTC).isoformat(),
            "meaning": meaning,
            "authenticatedWith": sorted(self.principal.amr),
        }

    async def operator(
        self, action: str, op_id: str, details: Mapping[str, Any], states: Sequence[OperationState]
    ) -> Operation:
        """Operator actions on an operation: allowed to QA managers of every plant of its lots, audited either way."""
        op = await self.operations.existing(op_id)
        await self.authorized("manageOperations", action, await self.guard.operation_entity(op), details)
        if op.state not in states:
            wanted = " or ".join(state.value for state in states)
            raise BadUserInput(f"operation {op_id} is {op.state.value}, not {wanted}", argument="id")
        return op

    async def authorized(self, permission: str, action: str, resource: Entity, details: Mapping[str, Any]) -> Decision:
        """An operator's `action` on one resource (an Operation, an ExceptionEntry): Cedar decides `permission`,
        the decision is audited either way, and a denial is FORBIDDEN."""
        decision = self.guard.decide(permission, resource)
        await self.audit(action, f"{resource.type}::{resource.id}", decision, details, resource)
        if not decision.allowed:
            raise Forbidden(decision.explanation, policy_ids=decision.policy_ids, action=action,
                            resource=resource.type)  # fmt: skip
        return decision

    async def refuse_half_applied(self, op: Operation) -> None:
        """Abandoning leaves every system as it is and nothing resumes the operation, so it is refused while a lot
        the operation already changed somewhere has systems that disagree (held in QMS, available in WMS) or cannot
        all be asked: that lot would stay half held, or half released, with no one told. Once the lot's systems
        agree again (the missing step done by hand, or a reconciliation), the operation can be abandoned."""
        changed = list(dict.fromkeys(step.lot_id for step in op.steps if step.state is StepState.DONE))
        assessed = await asyncio.gather(*(assess(self.guard.loaders.fresh, lot_id) for lot_id in changed))
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
