"""Builders for the Cedar entities lotgraph asks about, so callers never hand-write entity JSON."""

from __future__ import annotations

from collections.abc import Iterable

from policies.engine import Entity

ALL_PLANTS = "*"
UNKNOWN_PLANT = "?"  # the plant of a lot its system of record does not know: no token names it
GOVERNANCE = Entity("Governance", "lotgraph", {})


def user(sub: str, roles: Iterable[str], plants: Iterable[str] = (), supplier: str | None = None) -> Entity:
    plant_set = set(plants)
    return Entity(
        "User",
        sub,
        {
            "sub": sub,
            "plants": plant_set - {ALL_PLANTS},
            "allPlants": ALL_PLANTS in plant_set,
            "supplier": supplier or "",
        },
        tuple(("Role", role) for role in sorted(set(roles))),
    )


def lot(
    lot_id: str,
    *,
    plant: str,
    material: str,
    supplier: str | None = None,
    regulated: bool | None = None,
    hold_placers: Iterable[str] | None = None,
) -> Entity:
    """A lot; `regulated` and `hold_placers` are left out when not fetched (reads need neither)."""
    attrs: dict[str, object] = {"plant": plant, "material": material, "supplier": supplier or ""}
    if regulated is not None:
        attrs["regulated"] = regulated
    if hold_placers is not None:
        attrs["holdPlacers"] = set(hold_placers)
    return Entity("Lot", lot_id, attrs)


def material(material_id: str, *, regulated: bool) -> Entity:
    return Entity("Material", material_id, {"regulated": regulated})


def operation(op_id: str, *, actor: str, plants: Iterable[str], suppliers: Iterable[str] = ()) -> Entity:
    """An operation as the plants and suppliers of its lots; with no lot at all it is of no known plant."""
    return Entity(
        "Operation", op_id, {"actor": actor, "plants": set(plants) or {UNKNOWN_PLANT}, "suppliers": set(suppliers)}
    )


def exception_entry(entry_id: str, *, kind: str, plants: Iterable[str]) -> Entity:
    """An exception queue entry as the plants it is about; with none known it is of no known plant."""
    return Entity("ExceptionEntry", entry_id, {"kind": kind, "plants": set(plants) or {UNKNOWN_PLANT}})


def plants_and_suppliers(resource: Entity) -> tuple[set[str], set[str]]:
    """The plants and suppliers a Lot, an Operation or an ExceptionEntry belongs to (what an audit entry about it
    records)."""
    if resource.type == "Lot":
        return {resource.attrs["plant"]}, {resource.attrs["supplier"]} - {""}
    return set(resource.attrs["plants"]), set(resource.attrs.get("suppliers", ()))
