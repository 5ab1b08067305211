"""The side-by-side view of what each system believes about a lot."""

from __future__ import annotations

import strawberry

from gateway import consistency
from schema.enums import QualityStatus, StockStatus, System


@strawberry.type(description="One system's statement about a lot, normalized.")
class SystemView:
    system: System
    quality_status: QualityStatus | None
    stock_status: StockStatus | None = strawberry.field(
        description="The most usable status of any stock the system holds; null when it holds none."
    )
    reachable: bool
    error_code: str | None = strawberry.field(description="Why the system could not be asked.")


@strawberry.type
class Consistency:
    consistent: bool | None = strawberry.field(
        description="False on any disagreement; null when a system could not be asked and the rest agree."
    )
    systems: list[SystemView]
    disagreements: list[str]

    @classmethod
    def of(cls, result: consistency.Consistency) -> Consistency:
        return cls(
            consistent=result.consistent,
            systems=[
                SystemView(
                    system=v.system,
                    quality_status=v.quality_status,
                    stock_status=v.stock_status,
                    reachable=v.reachable,
                    error_code=v.error_code,
                )
                for v in result.systems
            ],
            disagreements=list(result.disagreements),
        )
