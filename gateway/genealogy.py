"""Lot genealogy as one graph: a breadth-first walk over MES links, one upstream request per level.

A recall over thousands of lots therefore costs `depth` requests, whatever its width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from gateway.contracts.mes import GenealogyStep
from gateway.model import GenealogyLink
from gateway.upstream import Upstream


class Direction(StrEnum):
    UPSTREAM = "UPSTREAM"
    DOWNSTREAM = "DOWNSTREAM"


@dataclass
class Walk:
    root: str
    direction: Direction
    max_depth: int
    nodes: dict[str, str | None] = field(default_factory=dict)  # lot id -> its material, where a link named it
    edges: list[GenealogyLink] = field(default_factory=list)
    levels: int = 0


async def walk(upstream: Upstream, root: str, direction: Direction, max_depth: int) -> Walk:
    """Every lot within `max_depth` links of `root`, and every link followed to reach them."""
    down = direction is Direction.DOWNSTREAM
    result = Walk(root=root, direction=direction, max_depth=max_depth)
    result.nodes[root] = None
    seen_links: set[tuple[str, str, str]] = set()
    frontier = [root]
    for depth in range(1, max_depth + 1):
        step = GenealogyStep(direction="down" if down else "up", lots=tuple(frontier))
        links: list[GenealogyLink] = await upstream.call("mes", "genealogy.step", step)
        next_frontier: list[str] = []
        for link in links:
            key = (link.consumed_lot_id, link.produced_lot_id, link.order_id)
            if key in seen_links:
                continue
            seen_links.add(key)
            result.edges.append(link)
            if down:
                reached, material = link.produced_lot_id, link.produced_material_id
            else:
                reached, material = link.consumed_lot_id, link.consumed_material_id
            if reached not in result.nodes:
                result.nodes[reached] = material
                next_frontier.append(reached)
        if links:
            result.levels = depth
        if not next_frontier:
            break
        frontier = next_frontier
    return result
