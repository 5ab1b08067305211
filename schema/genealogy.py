"""The traceability graph of a lot as one object: nodes and consumption edges."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from gateway.genealogy import Walk
from schema.enums import GenealogyDirection

if TYPE_CHECKING:
    from schema.lot import Lot

LotRef = Annotated["Lot", strawberry.lazy("schema.lot")]


@strawberry.type(description="`from` (the consumed lot) went into `to` (the produced lot).")
class GenealogyEdge:
    from_: strawberry.ID = strawberry.field(name="from")
    to: strawberry.ID
    quantity: float
    unit: str
    production_order_id: str


@strawberry.type
class Genealogy:
    root: strawberry.ID
    direction: GenealogyDirection
    max_depth: int
    depth_reached: int = strawberry.field(description="How many levels had links (at most maxDepth).")
    nodes: list[LotRef] = strawberry.field(description="Every lot in the graph the caller may see, the root first.")
    edges: list[GenealogyEdge] = strawberry.field(description="The links between lots the caller may see.")
    redacted_count: int = strawberry.field(description="Lots in the graph the caller may not see (left out).")

    @classmethod
    def of(cls, walk: Walk, readable: set[str]) -> Genealogy:
        from schema.lot import Lot

        shown = {lot_id: material for lot_id, material in walk.nodes.items() if lot_id in readable}
        return cls(
            root=strawberry.ID(walk.root),
            direction=walk.direction,
            max_depth=walk.max_depth,
            depth_reached=walk.levels,
            redacted_count=len(walk.nodes) - len(shown),
            nodes=[
                Lot(id=strawberry.ID(lot), material_hint=material, authorized=True) for lot, material in shown.items()
            ],
            edges=[
                GenealogyEdge(
                    from_=strawberry.ID(e.consumed_lot_id),
                    to=strawberry.ID(e.produced_lot_id),
                    quantity=e.quantity,
                    unit=e.unit,
                    production_order_id=e.order_id,
                )
                for e in walk.edges
                if e.consumed_lot_id in readable and e.produced_lot_id in readable
            ],
        )
