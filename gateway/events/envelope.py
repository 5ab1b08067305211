"""The canonical event envelope every source's events are normalized into, and every subscriber receives."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

SCHEMA_VERSION = 2  # 2: payload keys are camelCase, like the rest of the API


class EventType(StrEnum):
    LOT_STATUS_CHANGED = "LotStatusChanged"
    INSPECTION_COMPLETED = "InspectionCompleted"
    NONCONFORMANCE_OPENED = "NonconformanceOpened"
    NONCONFORMANCE_CLOSED = "NonconformanceClosed"
    HOLD_PLACED = "HoldPlaced"
    HOLD_RELEASED = "HoldReleased"
    PRODUCTION_COMPLETED = "ProductionCompleted"
    SCRAP_CONFIRMED = "ScrapConfirmed"
    GOODS_RECEIVED = "GoodsReceived"  # supplier material at the receiving dock (WMS)
    # Not a plant event: the gateway's own operations announce their progress (`operationUpdated`).
    OPERATION_UPDATED = "OperationUpdated"


PLANT_EVENTS = frozenset(EventType) - {EventType.OPERATION_UPDATED}


class LotRef(BaseModel):
    """The lot an event is about, with the attributes policies and filters look at."""

    model_config = ConfigDict(frozen=True)

    id: str
    material: str | None = None
    supplier: str | None = None


class Event(BaseModel):
    """One thing that happened, in the canonical model. `cursor` is the bus position, set when published."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: EventType
    source: str  # qms | mes | erp | lotgraph
    plant: str | None
    lot: LotRef | None
    occurred: datetime
    ingested: datetime = Field(default_factory=lambda: datetime.now(UTC))
    correlation_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    schema_version: int = SCHEMA_VERSION
    payload: dict[str, Any] = Field(default_factory=dict)
    cursor: str | None = None

    @field_validator("payload")
    @classmethod
    def _camel_case(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """One naming style for every payload, whoever built it (`operationId` beside `reasonCode`); canonical
        records hold no data-keyed mappings, so every key here is a field name."""
        return _camel(payload)

    def at(self, cursor: str) -> Event:
        return self.model_copy(update={"cursor": cursor})


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {to_camel(key): _camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value
