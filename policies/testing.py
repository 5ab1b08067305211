"""Policy tests as data: allow/deny cases in YAML beside the policies (`policies/tests/*.yaml`), run by
`lotgraph policy test` and by the test suite, so a policy change that flips a decision is caught."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from policies import entities
from policies.engine import POLICY_DIR, Decision, Entity, PolicyEngine, Request

CASES_DIR = POLICY_DIR / "tests"


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    request: Request
    expect_allowed: bool
    decided_by: frozenset[str] | None


@dataclass(frozen=True)
class Outcome:
    case: Case
    decision: Decision

    @property
    def passed(self) -> bool:
        if self.decision.allowed != self.case.expect_allowed:
            return False
        return self.case.decided_by is None or set(self.decision.policy_ids) == self.case.decided_by

    def describe(self) -> str:
        expected = "ALLOW" if self.case.expect_allowed else "DENY"
        by = f" by {sorted(self.case.decided_by)}" if self.case.decided_by is not None else ""
        return f"{self.case.file}: {self.case.name}: expected {expected}{by}; got {self.decision.explanation}"


def _resource(spec: dict[str, Any]) -> Entity:
    kind = spec.get("type", "Lot")
    if kind == "Lot":
        return entities.lot(
            spec.get("id", "LOT"),
            plant=spec["plant"],
            material=spec.get("material", "MAT"),
            supplier=spec.get("supplier"),
            regulated=spec.get("regulated"),
            hold_placers=spec.get("hold_placers"),
        )
    if kind == "Material":
        return entities.material(spec.get("id", "MAT"), regulated=spec.get("regulated", False))
    if kind == "Governance":
        return entities.GOVERNANCE
    if kind == "Operation":
        return entities.operation(
            spec.get("id", "OP"), actor=spec.get("actor", "someone"), plants=spec.get("plants", ()),
            suppliers=spec.get("suppliers", ()),
        )  # fmt: skip
    if kind == "ExceptionEntry":
        kind_of = spec.get("kind", "EVENT")
        return entities.exception_entry(spec.get("id", "1"), kind=kind_of, plants=spec.get("plants", ()))
    raise ValueError(f"unknown resource type {kind!r}")


def load_cases(directory: Path = CASES_DIR) -> list[Case]:
    cases = []
    for path in sorted(directory.glob("*.yaml")):
        for spec in yaml.safe_load(path.read_text()) or []:
            who = spec["principal"]
            cases.append(
                Case(
                    name=spec["name"],
                    file=path.name,
                    request=Request(
                        principal=entities.user(
                            who.get("sub", "tester"), who.get("roles", ()), who.get("plants", ()), who.get("supplier")
                        ),
                        action=spec["action"],
                        resource=_resource(spec["resource"]),
                        context=spec.get("context", {}),
                    ),
                    expect_allowed=spec["expect"] == "ALLOW",
                    decided_by=frozenset(spec["decided_by"]) if "decided_by" in spec else None,
                )
            )
    return cases


def run(engine: PolicyEngine, cases: list[Case]) -> list[Outcome]:
    # One decision per case: cases reuse entity ids with different attributes, so they must not share a batch.
    return [Outcome(case, engine.decide(case.request)) for case in cases]
