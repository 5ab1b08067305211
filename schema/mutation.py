"""The root Mutation: governed quality commands and operator actions on stuck operations."""

from __future__ import annotations

from enum import Enum

import strawberry

from resolvers import mutations
from resolvers.context import GatewayContext
from schema.access import guarded_by
from schema.enums import GenealogyDirection
from schema.operations import Operation

Info = strawberry.Info[GatewayContext, None]


@strawberry.input
class PlaceQualityHoldInput:
    lot_id: strawberry.ID
    reason_code: str
    reason: str
    idempotency_key: str = strawberry.field(description="Repeat a request with the same key to get the same result.")


@strawberry.input
class PlaceRecallHoldInput:
    lot_id: strawberry.ID
    direction: GenealogyDirection
    max_depth: int
    reason: str
    idempotency_key: str


@strawberry.input
class ReleaseQualityHoldInput:
    hold_id: strawberry.ID
    justification: str
    idempotency_key: str


@strawberry.enum(description="What becomes of a lot after quality has decided.")
class DispositionDecision(Enum):
    RELEASE = "RELEASE"
    SCRAP = "SCRAP"
    REWORK = "REWORK"
    RETURN_TO_SUPPLIER = "RETURN_TO_SUPPLIER"


@strawberry.input
class DispositionLotInput:
    lot_id: strawberry.ID
    decision: DispositionDecision
    reason: str
    idempotency_key: str


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Block a lot in QMS, WMS and ERP.", directives=guarded_by("placeQualityHold"))
    async def place_quality_hold(self, info: Info, input: PlaceQualityHoldInput) -> Operation:
        op = await mutations.place_quality_hold(
            info.context, input.lot_id, input.reason_code, input.reason, input.idempotency_key
        )
        return Operation.of(op)

    @strawberry.mutation(
        description="Hold every lot of a genealogy (a recall) in QMS, WMS and ERP, in one operation.",
        directives=guarded_by("placeRecallHold"),
    )
    async def place_recall_hold(self, info: Info, input: PlaceRecallHoldInput) -> Operation:
        op = await mutations.place_recall_hold(
            info.context, input.lot_id, input.direction, input.max_depth, input.reason, input.idempotency_key
        )
        return Operation.of(op)

    @strawberry.mutation(
        description="Release a hold: an electronic signature by a QA manager, checked against every release rule.",
        directives=guarded_by("releaseQualityHold"),
    )
    async def release_quality_hold(self, info: Info, input: ReleaseQualityHoldInput) -> Operation:
        op = await mutations.release_quality_hold(
            info.context, input.hold_id, input.justification, input.idempotency_key
        )
        return Operation.of(op)

    @strawberry.mutation(
        description="Decide a lot's fate (a signed QA decision): RELEASE unblocks, SCRAP posts 551/553/555 and "
        "closes the WMS stock, REWORK and RETURN_TO_SUPPLIER keep it blocked.",
        directives=guarded_by("dispositionLot"),
    )
    async def disposition_lot(self, info: Info, input: DispositionLotInput) -> Operation:
        op = await mutations.disposition_lot(
            info.context, input.lot_id, input.decision.value, input.reason, input.idempotency_key
        )
        return Operation.of(op)

    @strawberry.mutation(
        description="Run a pending operation's remaining steps now.", directives=guarded_by("manageOperations")
    )
    async def retry_operation(self, info: Info, id: strawberry.ID) -> Operation:
        return Operation.of(await mutations.retry_operation(info.context, id))

    @strawberry.mutation(
        description="Stop retrying a pending operation; its systems stay as they are, audited.",
        directives=guarded_by("manageOperations"),
    )
    async def abandon_operation(self, info: Info, id: strawberry.ID, reason: str) -> Operation:
        return Operation.of(await mutations.abandon_operation(info.context, id, reason))
