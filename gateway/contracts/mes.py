"""MES contracts: production executions, MES's own lot status, and genealogy links."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.codes import MES_LOT_STATUS, translate
from gateway.contracts.base import Contract, Keys, Upstream, register
from gateway.model import GenealogyLink, MesLot, OperationCompletion, ProductionExecution
from gateway.sources.connector import SourceConnector


class MesOperation(Upstream):
    operation: str
    description: str
    work_center: str
    completed_at: datetime | None = None
    yield_quantity: float
    scrap_quantity: float


class MesExecution(Upstream):
    order_id: str
    produced_lot: str
    material: str
    plant: str
    line: str
    status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    good_quantity: float
    scrap_quantity: float
    unit: str
    operations: list[MesOperation]


class MesExecutions(Upstream):
    executions: list[MesExecution]


class MesLotRecord(Upstream):
    lot_id: str
    material: str
    plant: str
    status: str


class MesLots(Upstream):
    lots: list[MesLotRecord]


class MesLink(GenealogyLink):
    """A MES genealogy link validated straight into the canonical link, MES's names its validation aliases: a
    recall's walk reads 17,000 links, and building each twice (MES's shape, then the canonical one) cost more
    than parsing them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    consumed_lot_id: str = Field(validation_alias="consumed_lot")
    consumed_material_id: str = Field(validation_alias="consumed_material")
    consumed_plant_id: str = Field(validation_alias="consumed_plant")
    produced_lot_id: str = Field(validation_alias="produced_lot")
    produced_material_id: str = Field(validation_alias="produced_material")
    produced_plant_id: str = Field(validation_alias="produced_plant")


class MesLinks(Upstream):
    links: list[MesLink]


class GenealogyStep(BaseModel):
    """One level of a genealogy walk: the links that consumed (`down`) or produced (`up`) these lots."""

    model_config = ConfigDict(frozen=True)

    direction: Literal["down", "up"]
    lots: tuple[str, ...] = Field(min_length=1)


async def _genealogy_step(mes: SourceConnector, request: GenealogyStep):
    # POST search takes any number of lots in one request, so a walk costs one request per level.
    key = "consumed" if request.direction == "down" else "produced"
    return await mes.post("/api/genealogy/search", {key: list(request.lots)}, idempotent=True)


def _execution(e: MesExecution) -> ProductionExecution:
    return ProductionExecution(
        order_id=e.order_id,
        lot_id=e.produced_lot,
        material_id=e.material,
        plant_id=e.plant,
        line=e.line,
        status=e.status,
        started_at=e.started_at,
        completed_at=e.completed_at,
        good_quantity=e.good_quantity,
        scrap_quantity=e.scrap_quantity,
        unit=e.unit,
        operations=tuple(
            OperationCompletion(
                operation=o.operation,
                description=o.description,
                work_center=o.work_center,
                completed_at=o.completed_at,
                yield_quantity=o.yield_quantity,
                scrap_quantity=o.scrap_quantity,
            )
            for o in e.operations
        ),
    )


async def _executions_send(mes: SourceConnector, request: Keys):
    return await mes.get_keyed("/api/executions", "order_ids", request.keys)


async def _lots_send(mes: SourceConnector, request: Keys):
    return await mes.get_keyed("/api/lots", "ids", request.keys)


EXECUTION_READ = register(
    Contract(
        "mes", "execution.read", 1, "How production orders ran: operations, yield, scrap",
        request=Keys, response=MesExecutions,
        send=_executions_send,
        adapt=lambda body: [_execution(e) for e in body.executions],
    )
)  # fmt: skip

LOT_READ = register(
    Contract(
        "mes", "lot.read", 1, "MES's own status of the lots it produced",
        request=Keys, response=MesLots,
        send=_lots_send,
        adapt=lambda body: [
            MesLot(
                lot_id=m.lot_id,
                material_id=m.material,
                plant_id=m.plant,
                status=translate(MES_LOT_STATUS, m.status, field="status"),
            )
            for m in body.lots
        ],
    )
)  # fmt: skip

GENEALOGY_STEP = register(
    Contract(
        "mes", "genealogy.step", 1, "Genealogy links one level up or down from a set of lots",
        request=GenealogyStep, response=MesLinks,
        send=_genealogy_step,
        adapt=lambda body: body.links,
    )
)  # fmt: skip
