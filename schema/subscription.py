"""The Subscription root: plant events as they happen, each subscriber seeing only the lots it may read."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from gateway.errors import NotFound
from gateway.events import envelope
from gateway.events.envelope import PLANT_EVENTS
from gateway.store.operations import OperationState
from resolvers import subscriptions
from resolvers.context import GatewayContext
from schema.access import AUTHENTICATED, guarded_by
from schema.enums import EventType
from schema.governance import require_operation_access
from schema.operations import Operation
from schema.renderings import Shared, unexecuted

Info = strawberry.Info[GatewayContext, None]


RECENT_EVENTS = 1024  # events whose shared `QualityEvent` is kept: far more than arrive while one is fanned out


@strawberry.type(description="One canonical plant event. Pass `cursor` as `after` to resume after it.")
class QualityEvent(Shared):
    """Every field is the event's own data, the same for every reader (so its renderings are shared)."""

    id: strawberry.ID
    cursor: str
    type: EventType
    source: str = strawberry.field(description="qms, mes, erp, or lotgraph for the gateway's own operations.")
    plant: str | None
    lot_id: str | None
    material: str | None
    supplier: str | None
    occurred_at: datetime
    ingested_at: datetime
    correlation_id: str
    schema_version: int
    payload: JSON = strawberry.field(description="The event's content in the canonical model (snake_case).")

    @classmethod
    def of(cls, event: envelope.Event) -> QualityEvent:
        """One object per bus event, whichever subscriber asks: each selection of it is executed once."""
        key = (event.id, event.cursor)
        if (shared := _recent.get(key)) is None:
            shared = _recent[key] = cls._made(event)
            shared.renderings = {}
            if len(_recent) > RECENT_EVENTS:
                _recent.popitem(last=False)
        return shared

    @classmethod
    def _made(cls, event: envelope.Event) -> QualityEvent:
        lot = event.lot
        return cls(
            id=strawberry.ID(event.id),
            cursor=event.cursor or "",
            type=event.type,
            source=event.source,
            plant=event.plant,
            lot_id=lot and lot.id,
            material=lot and lot.material,
            supplier=lot and lot.supplier,
            occurred_at=event.occurred,
            ingested_at=event.ingested,
            correlation_id=event.correlation_id,
            schema_version=event.schema_version,
            payload=event.payload,
        )


_recent: OrderedDict[tuple[str, str | None], QualityEvent] = OrderedDict()


@strawberry.input
class LotStatusFilter:
    lot_id: str | None = None
    plant: str | None = None
    material: str | None = None


@strawberry.input
class QualityEventFilter:
    supplier: str | None = None
    plant: str | None = None
    types: list[EventType] | None = strawberry.field(default=None, description="Default: every plant event type.")


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Status changes of lots, as any system of record reports them.", directives=guarded_by("readLot")
    )
    async def lot_status_changed(
        self, info: Info, filter: LotStatusFilter | None = None
    ) -> AsyncGenerator[QualityEvent, None]:
        f = filter or LotStatusFilter()
        accept = subscriptions.lot_status_filter(f.lot_id, f.plant, f.material)
        async for event in unexecuted(info, subscriptions.events(info.context, accept), QualityEvent.of):
            yield event

    @strawberry.subscription(
        description="Quality events (inspections, nonconformances, holds, status, production, scrap). "
        "With `after`, every retained event after that cursor comes first, then live ones: none twice, none lost.",
        directives=guarded_by("readLot"),
    )
    async def quality_events(
        self, info: Info, filter: QualityEventFilter | None = None, after: str | None = None
    ) -> AsyncGenerator[QualityEvent, None]:
        f = filter or QualityEventFilter()
        types = frozenset(envelope.EventType(t) for t in f.types) if f.types else PLANT_EVENTS
        accept = subscriptions.quality_filter(f.supplier, f.plant, types)
        async for event in unexecuted(info, subscriptions.events(info.context, accept, after), QualityEvent.of):
            yield event

    @strawberry.subscription(
        description="An operation's state now, then after each change, until it is finished.", directives=AUTHENTICATED
    )
    async def operation_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Operation, None]:
        store = info.context.runtime.operations.store
        with subscriptions.Subscription(info.context, subscriptions.operation_filter(id), authorize=False) as sub:
            op = await store.get(id)
            if op is None:
                raise NotFound(f"no operation '{id}'", argument="id")
            await require_operation_access(info, op)
            yield Operation.of(op)
            if op.state is OperationState.PENDING:
                async for _ in sub.stream():
                    op = await store.get(id)
                    assert op is not None
                    yield Operation.of(op)
                    if op.state is not OperationState.PENDING:
                        return
