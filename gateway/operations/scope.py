"""Whose an operation is: the plants and suppliers of the lots it changes, from the ERP batch master.

Who may read, retry or abandon an operation (Cedar's `Operation` entity), and which auditors see the audit
entries about it, follow from its lots exactly as a lot read does. A lot's plant and supplier never change, so
they are looked up (the request's batch loader, or the ERP for the executor) when asked rather than copied onto
the operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.model import Lot
from gateway.store.operations import Operation
from policies.entities import UNKNOWN_PLANT


@dataclass(frozen=True)
class LotScope:
    plants: frozenset[str]
    suppliers: frozenset[str]

    @classmethod
    def of(cls, batches: Iterable[Lot | None]) -> LotScope:
        """A lot the ERP does not know is of UNKNOWN_PLANT (fail closed: only all-plants callers see it)."""
        found = list(batches)
        return cls(
            plants=frozenset(b.plant_id if b else UNKNOWN_PLANT for b in found) or frozenset({UNKNOWN_PLANT}),
            suppliers=frozenset(b.supplier_id for b in found if b and b.supplier_id),
        )


def lots_of(op: Operation) -> list[str]:
    return list(dict.fromkeys(step.lot_id for step in op.steps))
