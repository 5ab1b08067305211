"""Versioned service contracts: what the gateway sends each upstream operation and what it accepts back.

A contract is named `source.operation@version` (e.g. `erp.batch.read@1`). Calling it validates the request,
sends it through the source's connector, validates every response body against the response model and
normalizes the result into canonical objects. An answer that does not fit raises `ContractViolation`
naming the source, the contract and the offending field, so a silently changed upstream API never
reaches clients as wrong data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Generic, TypeVar

import httpx2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.codes import UnknownCode
from gateway.errors import ContractViolation, GatewayError
from gateway.sources.connector import status_error

Req = TypeVar("Req", bound=BaseModel)
Resp = TypeVar("Resp", bound=BaseModel)
Out = TypeVar("Out")


class ContractStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DEPRECATED = "DEPRECATED"


class Upstream(BaseModel):
    """Base of response models: unknown extra fields are tolerated, missing or mistyped ones are not."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Keys(BaseModel):
    """The request of every batch read: the keys wanted, at least one."""

    model_config = ConfigDict(frozen=True)

    keys: tuple[str, ...] = Field(min_length=1)


BULK_ITEMS = 500  # items per bulk write request (the systems' own limit)


class BulkError(Upstream):
    code: str
    message: str


class BulkItem(Upstream, Generic[Resp]):
    """One item's answer in a bulk write: its own status, and its result or why it was refused."""

    status: int
    result: Resp | None = None
    error: BulkError | None = None


class Bulk(Upstream, Generic[Resp]):
    """The answer of a bulk write (QMS holds, WMS moves): one item per item asked, in the order asked."""

    items: list[BulkItem[Resp]]


def bulk_outcomes(source: str, body: Bulk[Resp], canonical: Callable[[Resp], Out]) -> list[Out | GatewayError]:
    """Each item canonical, or the typed error of its own status (a refusal of one lot fails that lot only)."""
    outcomes: list[Out | GatewayError] = []
    for item in body.items:
        if item.status < 300 and item.result is not None:
            outcomes.append(canonical(item.result))
        else:
            why = item.error.message if item.error else "no result"
            outcomes.append(status_error(source, item.status, f"{source.upper()} answered {item.status}: {why}"))
    return outcomes


@dataclass(frozen=True)
class Contract(Generic[Req, Resp, Out]):
    source: str
    operation: str
    version: int
    summary: str
    request: type[Req]
    response: type[Resp]
    send: Callable[[Any, Req], Awaitable[httpx2.Response | Sequence[httpx2.Response]]]
    adapt: Callable[[Resp], list[Out]]
    status: ContractStatus = ContractStatus.ACTIVE
    sunset: date | None = None

    @property
    def name(self) -> str:
        return f"{self.source}.{self.operation}@{self.version}"

    async def call(self, connector: Any, request: Req) -> list[Out]:
        """Send `request`, validate each response against this contract, return canonical objects."""
        sent = await self.send(connector, request)
        responses = [sent] if isinstance(sent, httpx2.Response) else sent
        results: list[Out] = []
        for response in responses:
            results.extend(self.parse(response))
        return results

    def parse(self, response: httpx2.Response) -> list[Out]:
        try:
            # Parsed and validated in one pass by pydantic-core (a genealogy level is 10,000 links).
            body = self.response.model_validate_json(b"{}" if response.status_code == 204 else response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "json_invalid":
                raise self._violation("(body)", "is not valid JSON") from None
            where = ".".join(str(part) for part in first["loc"]) or "(body)"
            raise self._violation(where, f"violates the contract: {first['msg']}") from None
        try:
            return self.adapt(body)
        except UnknownCode as exc:
            raise self._violation(exc.field, str(exc)) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            raise self._violation(str(first["loc"][0]), f"cannot be normalized: {first['msg']}") from None

    def _violation(self, field: str, problem: str) -> ContractViolation:
        return ContractViolation(source=self.source, contract=self.name, field=field, problem=problem)


REGISTRY: dict[str, Contract[Any, Any, Any]] = {}


def register(contract: Contract[Req, Resp, Out]) -> Contract[Req, Resp, Out]:
    """Make a contract visible to the `contracts` query; names must be unique."""
    if contract.name in REGISTRY:
        raise ValueError(f"contract {contract.name} is defined twice")
    REGISTRY[contract.name] = contract
    return contract


def contract_for(source: str, operation: str, version: int) -> Contract[Any, Any, Any]:
    """The contract a source speaking `version` uses for `operation`: the newest one not above it.

    An operation that did not change in a newer API version keeps its older contract.
    """
    candidates = [
        c for c in REGISTRY.values() if c.source == source and c.operation == operation and c.version <= version
    ]
    if not candidates:
        raise LookupError(f"no contract for {source}.{operation} at version {version} or below")
    return max(candidates, key=lambda c: c.version)
