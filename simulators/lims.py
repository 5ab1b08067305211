"""A plant LIMS (laboratory information system) that is itself a Federation v2 GraphQL subgraph.

It extends lotgraph's `Lot` entity with the lab's own view: the samples it analysed and the certificate of
analysis it issued. It is the "second subgraph" a plant brings: lotgraph federates it (`LOTGRAPH_SUBGRAPHS`),
and a router such as Apollo Gateway composes both. Everything is derived from the seeded dataset and the lot
id, so it answers the same on every start; it shares the other simulators' admin API (stats, faults).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import strawberry
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.asgi import GraphQL

from simulators.admin import build_app
from simulators.credentials import Credentials
from simulators.records import Dataset
from simulators.records import Lot as LotRecord

# test, unit, lower and upper specification limit
TESTS: tuple[tuple[str, str, float, float], ...] = (
    ("ASSAY", "%", 98.0, 102.0),
    ("MOISTURE", "%", 0.0, 0.5),
    ("PH", "", 6.5, 7.5),
    ("VISCOSITY", "mPa.s", 80.0, 120.0),
)
ANALYSTS = ("l.chen", "m.okafor", "s.varga")


@strawberry.type(description="One analysis the lab ran on a sample of a lot.")
class LabSample:
    id: strawberry.ID
    test: str
    result: float
    unit: str
    lower_limit: float
    upper_limit: float
    analyst: str
    sampled_at: datetime

    @strawberry.field(description="The result lies within the specification limits.")
    def within_spec(self) -> bool:
        return self.lower_limit <= self.result <= self.upper_limit


@strawberry.type(description="The certificate of analysis the lab issued for a released lot.")
class Certificate:
    number: str
    issued_at: datetime
    conforms: bool


def _digest(lot_id: str) -> bytes:
    return hashlib.sha256(f"lims:{lot_id}".encode()).digest()


def samples_of(lot: LotRecord) -> list[LabSample]:
    """Two to four analyses per lot; a lot quality rejected has its first result out of specification."""
    digest = _digest(lot.id)
    samples = []
    for n in range(2 + digest[0] % 3):
        test, unit, low, high = TESTS[(digest[1] + n) % len(TESTS)]
        share = digest[2 + n] / 255  # where in the specification range the result falls
        result = (
            high + (high - low) * 0.2 if n == 0 and lot.quality_status == "REJECTED" else low + (high - low) * share
        )
        samples.append(LabSample(
            id=strawberry.ID(f"{lot.id}-S{n + 1}"), test=test, result=round(result, 3), unit=unit, lower_limit=low,
            upper_limit=high, analyst=ANALYSTS[digest[6 + n] % len(ANALYSTS)],
            sampled_at=lot.manufactured_at + timedelta(hours=2 + n)))  # fmt: skip
    return samples


def certificate_of(lot: LotRecord) -> Certificate | None:
    """Only released lots get a certificate."""
    if lot.quality_status != "RELEASED":
        return None
    conforms = all(sample.within_spec() for sample in samples_of(lot))
    return Certificate(number=f"COA-{lot.id}", issued_at=lot.manufactured_at + timedelta(days=2), conforms=conforms)


def create_app(dataset: Dataset, *, credentials: Credentials | None = None) -> Starlette:
    """The LIMS subgraph at `POST /graphql`, with the shared admin API (`/_admin/stats`, `/_admin/faults`);
    `credentials` makes it demand a token (`POST /oauth/token`) or API key."""

    def lot_record(lot_id: str) -> LotRecord | None:
        return dataset.lots.get(lot_id)

    @strawberry.federation.type(keys=["id"], description="A material lot, as the lab knows it.")
    class Lot:
        id: strawberry.ID

        @strawberry.field(description="The lab's analyses of this lot, oldest first.")
        def lab_samples(self, limit: int | None = None) -> list[LabSample]:
            if limit is not None and limit < 0:
                raise ValueError("limit must not be negative")
            record = lot_record(self.id)
            samples = samples_of(record) if record else []
            return samples if limit is None else samples[:limit]

        @strawberry.field
        def certificate_of_analysis(self) -> Certificate | None:
            record = lot_record(self.id)
            return certificate_of(record) if record else None

        @classmethod
        def resolve_reference(cls, id: strawberry.ID) -> Lot | None:
            return cls(id=id) if lot_record(id) else None

    @strawberry.type
    class Query:
        @strawberry.field(description="The lab's analyses of one lot (what lotgraph shows under Lot.labSamples).")
        def lab_samples(self, lot_id: strawberry.ID) -> list[LabSample]:
            record = lot_record(lot_id)
            return samples_of(record) if record else []

    schema = strawberry.federation.Schema(query=Query, types=[Lot], federation_version="2.7")

    def lot_state(lot_id: str) -> dict[str, object] | None:
        record = lot_record(lot_id)
        if record is None:
            return None
        return {"samples": [{"test": s.test, "result": s.result, "within_spec": s.within_spec()}
                            for s in samples_of(record)]}  # fmt: skip

    routes = [Route("/graphql", GraphQL(schema, graphql_ide=None), methods=["GET", "POST"])]
    return build_app(routes, lot_state, require_credentials=credentials)
