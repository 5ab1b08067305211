"""The exception queue in the graph: what cannot succeed by retrying (parked events, failed operation steps,
undeliverable notifications), listed for the plants a caller manages, retried or discarded by a person."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from gateway.store import exceptions as store
from resolvers import exceptions
from resolvers.context import GatewayContext
from schema.access import guarded_by
from schema.query import PageInfo

Info = strawberry.Info[GatewayContext, None]

ExceptionKind = strawberry.enum(
    store.ExceptionKind,
    description="EVENT: an inbound plant event whose reactions failed for good (subject: the event id). STEP: an "
    "operation a system refused (subject: the operation id). NOTIFICATION: an outbound notification past its retry "
    "budget (subject: the delivery id).",
)
ExceptionState = strawberry.enum(
    store.ExceptionState,
    description="OPEN waits for a person; RETRIED runs again (an EVENT's reactions from the inbox; a NOTIFICATION "
    "is due again at the delivery worker, with fresh tries) and becomes RESOLVED when it succeeds, or OPEN again "
    "when it fails; DISCARDED was given up, with a reason.",
)


@strawberry.type(description="An entry of the exception queue: what failed, why, and what became of it.")
class ExceptionEntry:
    id: strawberry.ID
    kind: ExceptionKind
    state: ExceptionState
    reason_code: str = strawberry.field(
        description="The error code that parked it, e.g. FORBIDDEN, NOT_FOUND; a notification's: TARGET_REFUSED, "
        "TARGET_TIMEOUT or TARGET_UNREACHABLE."
    )
    reason: str
    subject: str = strawberry.field(description="The event id, operation id or delivery id it is about.")
    lot_id: str | None
    plants: list[str] = strawberry.field(description="The plants it is about; `?` when none is known.")
    payload: JSON = strawberry.field(
        description="The parked event as received, the failed operation's summary, or the notification's target, "
        "event id and body as it would be sent."
    )
    attempts: int
    correlation_id: str | None
    created_at: datetime
    updated_at: datetime
    resolved_by: str | None = strawberry.field(description="Who retried, discarded or resolved it.")
    resolution: str | None = strawberry.field(description="Why: a discard's reason, or how it was resolved.")

    @classmethod
    def of(cls, entry: store.ExceptionEntry) -> ExceptionEntry:
        return cls(**{**vars(entry), "id": strawberry.ID(str(entry.id)), "plants": list(entry.plants),
                      "payload": dict(entry.payload)})  # fmt: skip


@strawberry.input
class ExceptionFilter:
    kind: ExceptionKind | None = None
    state: ExceptionState | None = None
    plant: str | None = None
    lot_id: str | None = None


@strawberry.type
class ExceptionEdge:
    cursor: str
    node: ExceptionEntry


@strawberry.type
class ExceptionConnection:
    edges: list[ExceptionEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Entries matching the filter in the plants the caller manages.")


@strawberry.type
class ExceptionsQuery:
    @strawberry.field(
        description="The exception queue, oldest first: entries whose plants the caller manages (QA managers and "
        "plant operators of those plants).",
        directives=guarded_by("manageExceptions"),
    )
    async def exceptions(
        self, info: Info, filter: ExceptionFilter | None = None, first: int = 50, after: str | None = None
    ) -> ExceptionConnection:
        f = filter or ExceptionFilter()
        found = await exceptions.page(
            info.context, first=first, after=after, kind=f.kind, state=f.state, plant=f.plant, lot_id=f.lot_id
        )
        edges = [ExceptionEdge(cursor=str(entry.id), node=ExceptionEntry.of(entry)) for entry in found.entries]
        return ExceptionConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=found.has_next_page, end_cursor=edges[-1].cursor if edges else None),
            total_count=found.total,
        )


@strawberry.type
class ExceptionsMutation:
    @strawberry.mutation(
        description="Run a parked entry again once its cause is fixed: an EVENT's reactions from the inbox, a STEP's "
        "operation as retryOperation does; a NOTIFICATION is marked RETRIED for the delivery worker. Audited.",
        directives=guarded_by("manageExceptions"),
    )
    async def retry_exception(self, info: Info, id: strawberry.ID) -> ExceptionEntry:
        return ExceptionEntry.of(await exceptions.retry(info.context, id))

    @strawberry.mutation(
        description="Give up an OPEN entry, saying why (a STEP's operation is abandoned as abandonOperation does). "
        "Audited.",
        directives=guarded_by("manageExceptions"),
    )
    async def discard_exception(self, info: Info, id: strawberry.ID, reason: str) -> ExceptionEntry:
        return ExceptionEntry.of(await exceptions.discard(info.context, id, reason))
