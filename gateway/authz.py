"""Per-request authorization: Cedar decisions for this caller, with resource attributes fetched through
the request's own loaders, batched (a list of lots is one Cedar batch) and cached per resource.

Reads fail closed: if the system that knows a lot's plant and supplier cannot answer, the lot is not shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter

from strawberry.dataloader import DataLoader

from gateway.auth import Principal
from gateway.errors import Forbidden, NotFound
from gateway.events.envelope import Event
from gateway.model import Lot
from gateway.operations.scope import LotScope, lots_of
from gateway.reads import Loaders, load_now
from gateway.store.operations import Operation
from policies import entities
from policies.engine import Decision, Entity, PolicyEngine, Request

log = logging.getLogger("lotgraph.authz")


def principal_entity(principal: Principal) -> Entity:
    return entities.user(principal.sub, principal.roles, principal.plants, principal.supplier_id)


_PROBE = "probe"  # no policy names lots or materials by id: a probe stands for any of them


@dataclass(frozen=True)
class ReadScope:
    """The lots `readLot` permits a caller, in the terms the sources filter on: every lot (`all_plants`), the
    lots of `plants`, and the lots supplied by `supplier`. Lists push it down, so counts and pages are over
    visible lots only; each lot is still decided by Cedar when shown."""

    all_plants: bool
    plants: frozenset[str]
    supplier: str | None


def read_scope(engine: PolicyEngine, principal: Principal) -> ReadScope:
    """Asked of the policies, not re-implemented: `readLot` on an in-house lot of a plant no token names (only
    an all-plants grant reads it), on an in-house lot of each of the token's plants, and on the supplier's own
    lot of such a plant."""
    user = principal_entity(principal)
    nowhere = entities.ALL_PLANTS  # never in a token's `plants` (it turns into allPlants instead)
    plants = sorted(user.attrs["plants"])
    # Distinct ids: one Cedar batch holds one entity per id.
    probes = [entities.lot(f"{_PROBE}-{n}", plant=plant, material=_PROBE) for n, plant in enumerate((nowhere, *plants))]
    if principal.supplier_id:
        probes.append(entities.lot(_PROBE, plant=nowhere, material=_PROBE, supplier=principal.supplier_id))
    allowed = [d.allowed for d in engine.decide_all([Request(user, "readLot", lot, {}) for lot in probes])]
    return ReadScope(
        all_plants=allowed[0],
        plants=frozenset(plant for plant, ok in zip(plants, allowed[1 : len(plants) + 1], strict=True) if ok),
        supplier=principal.supplier_id if principal.supplier_id and allowed[-1] else None,
    )


class Guard:
    def __init__(self, engine: PolicyEngine, principal: Principal, loaders: Loaders) -> None:
        self.engine = engine
        self.principal = principal
        self.user = principal_entity(principal)
        self.loaders = loaders
        self._lot_reads: DataLoader[str, Decision] = DataLoader(self._decide_lot_reads)
        self._lot_decisions: dict[str, Decision | None] = {}  # None: the ERP does not know the lot
        self._cost_reads: DataLoader[str, Decision] = DataLoader(self._decide_cost_reads)

    @cached_property
    def read_scope(self) -> ReadScope:
        return read_scope(self.engine, self.principal)

    async def lot_entity(self, lot_id: str, *, for_change: bool = False) -> Entity:
        """The lot as Cedar sees it: plant, material and supplier from the ERP batch; for decisions that change
        the lot also the regulated flag (material master) and who placed its active holds (QMS), read fresh
        from those systems: a decision never rests on a cached or stale answer."""
        batch = await self.loaders.batch.load(lot_id)
        if batch is None:
            raise NotFound(f"no lot '{lot_id}'", argument="id")
        if not for_change:
            return _read_entity(batch)
        fresh = self.loaders.fresh
        material, holds = await asyncio.gather(fresh.material.load(batch.material_id), fresh.holds.load(lot_id))
        return entities.lot(
            lot_id,
            plant=batch.plant_id,
            material=batch.material_id,
            supplier=batch.supplier_id,
            regulated=bool(material and material.regulated),
            hold_placers=[h.placed_by for h in holds if h.status.value == "ACTIVE"],
        )

    async def operation_entity(self, op: Operation) -> Entity:
        """The operation as Cedar sees it: its actor, and the plants and suppliers of its lots."""
        scope = LotScope.of(await self.loaders.batch.load_many(lots_of(op)))
        return entities.operation(op.id, actor=op.actor, plants=scope.plants, suppliers=scope.suppliers)

    async def _decide_lot_reads(self, lot_ids: list[str]) -> list[Decision | BaseException]:
        """Each lot's `readLot` decision (NOT_FOUND for a lot the ERP does not know), remembered for the request:
        one loader batch of ERP batches and one Cedar batch, with no coroutine per lot (a genealogy has 12,000)."""
        known = await load_now(self.loaders.batch, lot_ids)
        batches = [known[lot_id] for lot_id in lot_ids]
        decisions = self._read_decisions(batches)
        self._lot_decisions.update(zip(lot_ids, decisions, strict=True))
        self._log("readLot", [d for d in decisions if d is not None])
        return [
            decision or NotFound(f"no lot '{lot_id}'", argument="id")
            for lot_id, decision in zip(lot_ids, decisions, strict=True)
        ]

    def _read_decisions(self, batches: list[Lot | None]) -> list[Decision | None]:
        """`readLot` on each batch (None where there is none), asked once per kind of lot (plant, material,
        supplier) when the policies decide lots by their attributes alone: a genealogy's 12,000 lots are a few
        hundred kinds, and building a request for each lot cost more than Cedar's answers."""
        by_kind = self.engine.by_attributes("Lot")
        kinds: dict[object, Lot] = {}
        for batch in batches:
            if batch is not None:
                kinds.setdefault(_kind(batch) if by_kind else batch.id, batch)
        requests = [Request(self.user, "readLot", _read_entity(batch), {}) for batch in kinds.values()]
        decided = dict(zip(kinds, self.engine.decide_all(requests), strict=True))
        return [None if batch is None else decided[_kind(batch) if by_kind else batch.id] for batch in batches]

    async def _decide_cost_reads(self, material_ids: list[str]) -> list[Decision]:
        materials = await self.loaders.material.load_many(material_ids)
        requests = [
            Request(self.user, "readCost", entities.material(mid, regulated=bool(m and m.regulated)), {})
            for mid, m in zip(material_ids, materials, strict=True)
        ]
        decisions = self.engine.decide_all(requests)
        self._log("readCost", decisions)
        return decisions

    async def readable_lots(self, lot_ids: Iterable[str]) -> set[str]:
        """The subset of `lot_ids` this caller may read (unknown lots are simply not in it)."""
        ids = list(dict.fromkeys(lot_ids))
        if undecided := [lot_id for lot_id in ids if lot_id not in self._lot_decisions]:
            await self._decide_lot_reads(undecided)
        # A lot the ERP does not know (yet: MES has it, its receipt is in flight) is as good as unreadable.
        return {lot_id for lot_id in ids if (d := self._lot_decisions[lot_id]) is not None and d.allowed}

    async def require_lot_read(self, lot_id: str) -> None:
        decision = self._lot_decisions.get(lot_id) or await self._lot_reads.load(lot_id)
        self._enforce(decision, f"Lot::{lot_id}")

    async def require_cost_read(self, material_id: str) -> None:
        self._enforce(await self._cost_reads.load(material_id), f"Material::{material_id}")

    def decide(self, action: str, resource: Entity, context: dict[str, object] | None = None) -> Decision:
        decision = self.engine.decide(Request(self.user, action, resource, context or {}))
        self._log(action, [decision])
        return decision

    def decide_all(
        self, action: str, resources: Iterable[Entity], context: dict[str, object] | None = None
    ) -> list[Decision]:
        """One Cedar batch: the decision on each resource, in order (resource ids must be distinct)."""
        requests = [Request(self.user, action, resource, dict(context or {})) for resource in resources]
        decisions = self.engine.decide_all(requests)
        self._log(action, decisions)
        return decisions

    def require(self, action: str, resource: Entity, context: dict[str, object] | None = None) -> Decision:
        decision = self.decide(action, resource, context)
        self._enforce(decision, f"{resource.type}::{resource.id}")
        return decision

    @staticmethod
    def _enforce(decision: Decision, resource: str) -> None:
        if not decision.allowed:
            raise Forbidden(
                decision.explanation, policy_ids=decision.policy_ids, action=decision.action, resource=resource
            )

    def _log(self, action: str, decisions: list[Decision]) -> None:
        """Every decision is logged with the policies that determined it (aggregated per batch)."""
        if not decisions:
            return
        outcomes = Counter((d.allowed, d.policy_ids) for d in decisions)
        for (allowed, policy_ids), count in outcomes.items():
            log.info(
                "authz %s %s x%d principal=%s policies=%s",
                action, "ALLOW" if allowed else "DENY", count, self.principal.sub, ",".join(policy_ids) or "-",
            )  # fmt: skip


_kind: Callable[[Lot], tuple[str, str, str | None]] = attrgetter("plant_id", "material_id", "supplier_id")
"""What `readLot` looks at of a lot (`_read_entity`'s attributes)."""


def _read_entity(batch: Lot) -> Entity:
    """A lot as `readLot` sees it: what its ERP batch says of its plant, material and supplier."""
    return entities.lot(batch.id, plant=batch.plant_id, material=batch.material_id, supplier=batch.supplier_id)


class ReadDecisions:
    """`readLot` decisions for events, shared by every subscription of the process: keyed by what the policies
    look at (the caller's roles, plants and supplier; the lot's plant, material and supplier), so a thousand
    subscribers with the same kind of token cost one Cedar call per kind of lot, not a thousand.
    Policies are loaded once per process, so a decision stays right; the memo is bounded."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._decided: dict[tuple[object, ...], bool] = {}

    def allowed(self, guard: Guard, event: Event) -> bool:
        if event.lot is None or event.plant is None:
            return False  # plant events always name their lot; anything else is not for lot readers
        who = guard.principal
        key = (who.roles, who.plants, who.supplier_id, event.plant, event.lot.material, event.lot.supplier)
        allowed = self._decided.get(key)
        if allowed is None:
            if len(self._decided) >= self.limit:
                self._decided.clear()
            resource = entities.lot(event.lot.id, plant=event.plant, material=event.lot.material or "",
                                    supplier=event.lot.supplier)  # fmt: skip
            allowed = self._decided[key] = guard.decide("readLot", resource).allowed
        return allowed
