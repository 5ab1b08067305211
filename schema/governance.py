"""What the security team audits, as queries: the policy set, dry-run decisions, the audit log, and
operations (pending ones first of all). Each is itself governed by the policies."""

from __future__ import annotations

import asyncio
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from gateway.errors import BadUserInput, NotFound
from gateway.paging import page_start
from gateway.store import operations as store
from gateway.store.operations import NEEDS_ATTENTION
from policies import entities
from policies.engine import Request
from resolvers.context import GatewayContext
from schema.access import AUTHENTICATED, guarded_by
from schema.operations import Operation

Info = strawberry.Info[GatewayContext, None]


@strawberry.type
class Policy:
    id: str
    effect: str
    file: str
    annotations: JSON
    text: str


@strawberry.type(description="The active policy set; the hash changes whenever any policy or the schema does.")
class PolicySet:
    content_hash: str
    policies: list[Policy]


@strawberry.type
class AuthorizationDecision:
    allowed: bool
    policy_ids: list[str] = strawberry.field(description="The policies that decided; empty when none permits.")
    reasons: list[str]
    explanation: str


@strawberry.input(description="A hypothetical caller, as a token would describe them.")
class PrincipalInput:
    sub: str
    roles: list[str]
    plants: list[str] = strawberry.field(default_factory=list)
    supplier_id: str | None = None


@strawberry.input(description="A hypothetical lot.")
class LotResourceInput:
    id: str = "LOT"
    plant: str = "P100"
    material: str = "MATERIAL"
    supplier: str | None = None
    regulated: bool | None = None
    hold_placers: list[str] | None = None


@strawberry.input
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    resource: str | None = None
    decision: str | None = None


@strawberry.type(description="One hash-chained audit entry.")
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    resource: str
    decision: str
    policy_ids: list[str]
    reason: str
    details: JSON
    correlation_id: str | None
    hash: str
    prev_hash: str
    plants: list[str] | None = strawberry.field(
        description="The plants of the lots this entry is about; null when it is about none (or older than this)."
    )
    suppliers: list[str] | None


@strawberry.type
class AuditPage:
    entries: list[AuditEntry]
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")
    has_next_page: bool


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def _require(info: Info, action: str) -> None:
    info.context.guard.require(action, entities.GOVERNANCE)


@strawberry.type
class GovernanceQuery:
    @strawberry.field(description="The active Cedar policy set (auditors).", directives=guarded_by("readPolicies"))
    def policies(self, info: Info) -> PolicySet:
        _require(info, "readPolicies")
        engine = info.context.runtime.policies
        return PolicySet(
            content_hash=engine.content_hash,
            policies=[Policy(id=p.id, effect=p.effect, file=p.file, annotations=dict(p.annotations), text=p.text)
                      for p in engine.policies],
        )  # fmt: skip

    @strawberry.field(
        description="Dry-run a decision for any principal and lot, with the policies that decide (auditors).",
        directives=guarded_by("explainAuthorization"),
    )
    def explain_authorization(
        self,
        info: Info,
        principal: PrincipalInput,
        action: str,
        resource: LotResourceInput,
        context: JSON | None = None,
    ) -> AuthorizationDecision:
        _require(info, "explainAuthorization")
        engine = info.context.runtime.policies
        if action not in engine.actions:
            raise BadUserInput(
                f"unknown action {action!r}; known: {', '.join(sorted(engine.actions))}", argument="action"
            )
        user = entities.user(principal.sub, principal.roles, principal.plants, principal.supplier_id)
        lot = entities.lot(
            resource.id, plant=resource.plant, material=resource.material, supplier=resource.supplier,
            regulated=resource.regulated, hold_placers=resource.hold_placers,
        )  # fmt: skip
        try:
            decision = engine.decide(Request(user, action, lot, dict(context or {})))
        except Exception as exc:  # cedar rejects unknown actions or ill-typed context
            raise BadUserInput(f"cannot evaluate {action}: {exc}", argument="action") from exc
        return AuthorizationDecision(
            allowed=decision.allowed, policy_ids=list(decision.policy_ids), reasons=list(decision.reasons),
            explanation=decision.explanation,
        )  # fmt: skip

    @strawberry.field(
        description="The audit log, oldest first (auditors): an auditor of some plants reads the entries about "
        "lots of those plants only; an auditor of every plant reads every entry.",
        directives=guarded_by("readAudit"),
    )
    async def audit_log(
        self, info: Info, filter: AuditFilter | None = None, first: int = 50, after: str | None = None
    ) -> AuditPage:
        _require(info, "readAudit")
        start = page_start(first, after)
        conditions = vars(filter) if filter else {}
        scope = info.context.guard.read_scope  # the plants whose lots this auditor reads
        rows = await info.context.runtime.opened_store.audit.page(
            after=start, limit=first + 1, plants=None if scope.all_plants else scope.plants, **conditions
        )
        shown = rows[:first]
        return AuditPage(
            entries=[AuditEntry(**{**vars(e), "policy_ids": list(e.policy_ids), "details": dict(e.details),
                                   "plants": _listed(e.plants), "suppliers": _listed(e.suppliers)})
                     for e in shown],
            end_cursor=str(shown[-1].seq) if shown else None,
            has_next_page=len(rows) > first,
        )  # fmt: skip

    @strawberry.field(
        description="Operations that need attention, oldest first, with why: PENDING (still being retried), BLOCKED "
        "and FAILED (waiting for a person); those on lots of the caller's plants (QA managers).",
        directives=guarded_by("manageOperations"),
    )
    async def pending_operations(self, info: Info) -> list[Operation]:
        _require(info, "manageOperations")
        guard = info.context.guard
        ops = await info.context.runtime.operations.store.in_state(*NEEDS_ATTENTION)
        resources = await asyncio.gather(*(guard.operation_entity(op) for op in ops))
        decisions = guard.decide_all("manageOperations", resources)
        return [Operation.of(op) for op, decision in zip(ops, decisions, strict=True) if decision.allowed]

    @strawberry.field(
        description="An operation by id: its own actor, or a QA manager of every plant of its lots.",
        directives=AUTHENTICATED,
    )
    async def operation(self, info: Info, id: strawberry.ID) -> Operation | None:
        op = await info.context.runtime.operations.store.get(id)
        if op is None:
            raise NotFound(f"no operation '{id}'", argument="id")
        await require_operation_access(info, op)
        return Operation.of(op)


async def require_operation_access(info: Info, op: store.Operation) -> None:
    """`readOperation`: its own actor, or a QA manager of all its lots' plants (else FORBIDDEN, like a lot)."""
    guard = info.context.guard
    guard.require("readOperation", await guard.operation_entity(op))
