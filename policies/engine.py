"""The Cedar engine wrapper: load the policy set and schema from this folder, decide, and say why.

Policies are data the security team audits: every `permit`/`forbid` carries an `@id` (reported with
each decision) and a `@reason` (the sentence a denied caller reads). One policy per `@id` block.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy
from cachetools import LRUCache

POLICY_DIR = Path(__file__).parent
NAMESPACE = "Lotgraph"
_POLICY_START = re.compile(r"^@id\(", re.MULTILINE)
_PLAIN = (str, bool, int, float)
_ACTIONS = re.compile(r"^\s*action\s+([\w\s,]+?)\s+appliesTo", re.MULTILINE)


class PolicyError(ValueError):
    """The policy set cannot be loaded: a syntax error, a schema violation, a missing or duplicate @id."""


@dataclass(frozen=True)
class Policy:
    id: str
    effect: str
    file: str
    annotations: Mapping[str, str]
    text: str

    @property
    def reason(self) -> str:
        return self.annotations.get("reason", self.id)


@dataclass(frozen=True)
class Entity:
    """A Cedar entity: `Lotgraph::<type>::"<id>"` with attributes and parent entities."""

    type: str
    id: str
    attrs: Mapping[str, Any]
    parents: tuple[tuple[str, str], ...] = ()

    @property
    def uid(self) -> dict[str, str]:
        return {"type": f"{NAMESPACE}::{self.type}", "id": self.id}

    def as_cedar(self) -> dict[str, Any]:
        attrs = {
            key: sorted(value) if isinstance(value, set | frozenset) else value for key, value in self.attrs.items()
        }
        parents = [{"type": f"{NAMESPACE}::{kind}", "id": ident} for kind, ident in self.parents]
        return {"uid": self.uid, "attrs": attrs, "parents": parents}


@dataclass(frozen=True)
class Decision:
    action: str
    allowed: bool
    policy_ids: tuple[str, ...]
    reasons: tuple[str, ...]

    @property
    def explanation(self) -> str:
        if self.policy_ids:
            verdict = "allowed by" if self.allowed else "denied by"
            return f"{self.action} {verdict} {', '.join(self.policy_ids)}: {' '.join(self.reasons)}"
        return f"{self.action} denied: no policy permits it"


@dataclass(frozen=True)
class Request:
    principal: Entity
    action: str
    resource: Entity
    context: Mapping[str, Any]
    entities: tuple[Entity, ...] = ()


class PolicyEngine:
    def __init__(self, directory: Path = POLICY_DIR, remembered: int = 10_000) -> None:
        self.directory = directory
        self.schema_text = (directory / "lotgraph.cedarschema").read_text()
        self.policies: list[Policy] = []
        for path in sorted(directory.glob("*.cedar")):
            self.policies += _split(path)
        ids = [policy.id for policy in self.policies]
        if duplicates := {i for i in ids if ids.count(i) > 1}:
            raise PolicyError(f"policy ids used twice: {sorted(duplicates)}")
        text = "\n".join(policy.text for policy in self.policies)
        validation = cedarpy.validate_policies(text, self.schema_text)
        if not validation.validation_passed:
            raise PolicyError("policies do not fit the schema: " + "; ".join(map(str, validation.errors)))
        self._named_types = frozenset(re.findall(rf'{NAMESPACE}::(\w+)::"', text))  # types some policy names by id
        self._policy_set = cedarpy.PolicySet.from_str(text)
        self._schema = cedarpy.Schema.from_str(self.schema_text)
        self.actions = frozenset(
            name.strip() for group in _ACTIONS.findall(self.schema_text) for name in group.split(",")
        )
        self._decided: LRUCache[tuple[object, ...], Decision] = LRUCache(maxsize=remembered)
        self._by_position = {f"policy{n}": policy for n, policy in enumerate(self.policies)}
        self.content_hash = hashlib.sha256(
            (self.schema_text + "\0" + "\0".join(p.text for p in self.policies)).encode()
        ).hexdigest()

    def by_attributes(self, resource_type: str) -> bool:
        """No policy names a resource of `resource_type` by id: resources alike in attributes (without parents)
        get the same decision, so a caller may ask once for each kind of them."""
        return resource_type not in self._named_types

    def decide(self, request: Request) -> Decision:
        return self.decide_all([request])[0]

    def decide_all(self, requests: Sequence[Request]) -> list[Decision]:
        """One Cedar batch for many requests (e.g. every lot of a list) sharing one entity set.

        Requests that differ only in the id of a resource no policy names (and that has no parents) must get
        the same answer, so each such group is asked once: a 12,000-lot genealogy is a few hundred decisions.
        A decision depends on nothing but the request and the policy set, which an engine loads once, so it is
        remembered (bounded): a caller paging through lots asks Cedar only about kinds of lots not seen before.
        """
        shared: dict[int, str] = {}  # each entity object's JSON, made once: all requests share one principal
        groups: dict[tuple[object, ...], list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(self._signature(request, shared), []).append(index)
        decided = {s: d for s in groups if (d := self._decided.get(s)) is not None}
        if undecided := [s for s in groups if s not in decided]:
            fresh = list(zip(undecided, self._decide_each([requests[groups[s][0]] for s in undecided]), strict=True))
            decided |= fresh
            self._decided.update(fresh)
        answers: list[Decision] = [None] * len(requests)  # type: ignore[list-item]
        for signature, members in groups.items():
            for index in members:
                answers[index] = decided[signature]
        return answers

    def _signature(self, request: Request, shared: dict[int, str]) -> tuple[object, ...]:
        resource = request.resource
        identity = resource.id if resource.parents or resource.type in self._named_types else ""
        return (
            _json(request.principal, shared), request.action, resource.type, identity, resource.parents,
            _canonical(resource.attrs), _canonical(request.context) if request.context else (),
            tuple(_json(e, shared) for e in request.entities) if request.entities else (),
        )  # fmt: skip

    def _decide_each(self, requests: Sequence[Request]) -> list[Decision]:
        entities: dict[tuple[str, str], Entity] = {}
        for request in requests:
            for entity in (request.principal, request.resource, *request.entities):
                entities[(entity.type, entity.id)] = entity
            for kind, ident in request.principal.parents:
                entities.setdefault((kind, ident), Entity(kind, ident, {}))
        cedar_requests = [
            {
                "principal": r.principal.uid,
                "action": {"type": f"{NAMESPACE}::Action", "id": r.action},
                "resource": r.resource.uid,
                "context": dict(r.context),
            }
            for r in requests
        ]
        results = cedarpy.is_authorized_batch(
            cedar_requests, self._policy_set, [e.as_cedar() for e in entities.values()], self._schema
        )
        return [self._decision(request.action, result) for request, result in zip(requests, results, strict=True)]

    def _decision(self, action: str, result: cedarpy.AuthzResult) -> Decision:
        if result.diagnostics.errors:
            # A policy that fails to evaluate must never turn into an accidental allow.
            return Decision(action, False, (), (f"policy evaluation failed: {result.diagnostics.errors}",))
        deciding = [self._by_position[position] for position in result.diagnostics.reasons]
        return Decision(
            action=action,
            allowed=result.allowed,
            policy_ids=tuple(p.id for p in deciding),
            reasons=tuple(p.reason for p in deciding),
        )


def _canonical(value: Mapping[str, Any]) -> object:
    """Attributes or context as a value equal for equal content (sets in any order): its sorted items when every
    value is a plain string, number or flag (a lot read's plant, material and supplier), else JSON text."""
    for v in value.values():  # a loop, not all(...): this runs once per lot of a 12,000-lot genealogy
        if not isinstance(v, _PLAIN):
            return json.dumps(
                value, sort_keys=True, default=lambda v: sorted(v) if isinstance(v, set | frozenset) else str(v)
            )
    return tuple(sorted(value.items()))


def _json(entity: Entity, made: dict[int, str]) -> str:
    """An entity's full JSON, made once per object for one batch (`made` is keyed by object identity)."""
    if (text := made.get(id(entity))) is None:
        text = made[id(entity)] = json.dumps(entity.as_cedar(), sort_keys=True, default=str)
    return text


def _split(path: Path) -> list[Policy]:
    """One `Policy` per `@id(...)` block of a file, each checked to hold exactly one policy."""
    content = path.read_text()
    starts = [match.start() for match in _POLICY_START.finditer(content)]
    preamble = content[: starts[0] if starts else len(content)]
    if any(line.strip() and not line.lstrip().startswith("//") for line in preamble.splitlines()):
        raise PolicyError(f"{path.name}: every policy needs an @id annotation")
    policies = []
    for start, end in zip(starts, [*starts[1:], len(content)], strict=True):
        text = _strip_trailing_comments(content[start:end])
        try:
            parsed = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]
        except Exception as exc:
            raise PolicyError(f"{path.name}: cannot parse policy at offset {start}: {exc}") from exc
        if len(parsed) != 1:
            raise PolicyError(f"{path.name}: the block at offset {start} holds {len(parsed)} policies, not one")
        (body,) = parsed.values()
        annotations = body.get("annotations", {})
        policies.append(Policy(annotations["id"], body["effect"], path.name, annotations, text))
    return policies


def _strip_trailing_comments(block: str) -> str:
    lines = block.rstrip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("//")):
        lines.pop()
    return "\n".join(lines) + "\n"
