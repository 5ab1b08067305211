"""GraphQL enums, taken from the canonical model so the graph and the contracts cannot drift apart."""

import strawberry

from gateway import model
from gateway.events.envelope import EventType as EventKind
from gateway.genealogy import Direction as _Direction

QualityStatus = strawberry.enum(model.QualityStatus, description="Whether quality lets a lot be used.")
StockStatus = strawberry.enum(model.StockStatus, description="What stock of a lot may be used for.")
InspectionStatus = strawberry.enum(model.InspectionStatus)
UsageDecisionCode = strawberry.enum(model.UsageDecisionCode)
NonconformanceState = strawberry.enum(model.NonconformanceState)
HoldStatus = strawberry.enum(model.HoldStatus)
MaterialClass = strawberry.enum(model.MaterialClass, description="ISA-95 material class.")
System = strawberry.enum(model.System, description="A system of record behind the gateway.")
GenealogyDirection = strawberry.enum(
    _Direction,
    name="GenealogyDirection",
    description="UPSTREAM: what went into a lot. DOWNSTREAM: where it went.",
)
EventType = strawberry.enum(EventKind, name="EventType", description="What happened, in the canonical event model.")
