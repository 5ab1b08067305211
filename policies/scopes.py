"""The roles each action can ever be permitted to, read off the Cedar policy set by asking it.

A router in front of lotgraph (Apollo Router composing a supergraph) enforces `@requiresScopes` before a request
reaches us. Those scopes are derived here from the same policies that decide, so the router's coarse boundary
and Cedar's fine one cannot drift apart: each role is asked alone, with the most favourable resource and context
an action can have (every plant, the supplier's own lot, every release check passed). A role refused even then
is never permitted, so the router may refuse it too; Cedar still decides every request that gets through.

A scope is a role's name: a router reads it from the token's `scope` claim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from policies import entities
from policies.engine import Entity, PolicyEngine, Request

_ROLE = re.compile(r'Role::"([^"]+)"')
_PROBE_SUPPLIER = "probe-supplier"
_LOT = entities.lot("probe-lot", plant="probe-plant", material="probe-material", supplier=_PROBE_SUPPLIER,
                    regulated=False, hold_placers=())  # fmt: skip
_RELEASE_CHECKS_PASSED = {"mfa": True, "authAgeSeconds": 0, "justified": True, "latestInspectionPassed": True,
                          "openNonconformances": 0}  # fmt: skip

# The most favourable request of each action: what resource it is about and what context proves.
PROBES: Mapping[str, tuple[Entity, Mapping[str, Any]]] = {
    "readLot": (_LOT, {}),
    "readCost": (entities.material("probe-material", regulated=False), {}),
    "placeQualityHold": (_LOT, {}),
    "placeRecallHold": (_LOT, {}),
    "releaseQualityHold": (_LOT, _RELEASE_CHECKS_PASSED),
    "dispositionLot": (_LOT, {**_RELEASE_CHECKS_PASSED, "decision": "RELEASE"}),
    "repairLot": (_LOT, {"qualityStatus": "ON_HOLD"}),
    "readAudit": (entities.GOVERNANCE, {}),
    "readPolicies": (entities.GOVERNANCE, {}),
    "explainAuthorization": (entities.GOVERNANCE, {}),
    "manageOperations": (entities.GOVERNANCE, {}),
    "manageExceptions": (entities.GOVERNANCE, {}),
}


def roles(engine: PolicyEngine) -> tuple[str, ...]:
    """Every role some policy names."""
    return tuple(sorted({role for policy in engine.policies for role in _ROLE.findall(policy.text)}))


def permitted_roles(engine: PolicyEngine, action: str) -> tuple[str, ...]:
    """The roles that, alone, are permitted `action` on its most favourable request."""
    resource, context = PROBES[action]
    candidates = roles(engine)
    users = [entities.user(f"probe-{role}", [role], [entities.ALL_PLANTS], _PROBE_SUPPLIER) for role in candidates]
    decisions = engine.decide_all([Request(user, action, resource, context) for user in users])
    return tuple(role for role, decision in zip(candidates, decisions, strict=True) if decision.allowed)


@cache
def _packaged() -> PolicyEngine:
    return PolicyEngine()


def required_scopes(action: str) -> list[list[str]]:
    """`@requiresScopes(scopes: ...)` for a field guarded by `action`: any one of the permitted roles."""
    return [[role] for role in permitted_roles(_packaged(), action)]
