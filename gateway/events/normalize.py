"""Native events of each source -> canonical `Event`s.

QMS statuses go through the same contract models and code tables as QMS reads (`gateway.contracts.qms`),
so a webhook and a query can never disagree about what a plant's code means. A body that does not fit is
`MalformedEvent`; a type this gateway does not know is `UnknownEventType`: both are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from gateway.codes import QMS_LOT_STATUS, UnknownCode, qms_translate
from gateway.contracts.qms import QmsHold, QmsInspectionLot, QmsLot, QmsNonconformance
from gateway.events.envelope import Event, EventType, LotRef
from gateway.model import Canonical, LotQuality

Record = TypeVar("Record", bound=BaseModel)


class RejectedEvent(ValueError):
    code = "MALFORMED_EVENT"


class MalformedEvent(RejectedEvent):
    pass


class UnknownEventType(RejectedEvent):
    code = "UNKNOWN_EVENT_TYPE"


class NativeEvent(BaseModel):
    """What QMS and MES send (webhook body or MQTT payload)."""

    id: str = Field(min_length=1, max_length=200)
    type: str
    occurred_at: datetime
    plant: str = Field(min_length=1)
    data: dict[str, Any]


def _event(
    native: NativeEvent, source: str, kind: EventType, lot: LotRef, payload: Canonical | dict[str, Any]
) -> Event:
    body = payload.model_dump(mode="json") if isinstance(payload, Canonical) else payload
    return Event(id=f"{source}:{native.id}", type=kind, source=source, plant=native.plant, lot=lot,
                 occurred=native.occurred_at, payload=body)  # fmt: skip


def _record(native: NativeEvent, key: str | None, model: type[Record], canonical: Callable[[Record], Any]) -> Any:
    """`native.data[key]` (or all of `data`) validated by `model` and made canonical; a problem is named by its
    place in the body."""
    where = "data" if key is None else f"data.{key}"
    try:
        return canonical(model.model_validate(native.data if key is None else native.data.get(key)))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise MalformedEvent(f"{'.'.join([where, *map(str, error['loc'])])}: {error['msg']}") from exc
    except UnknownCode as exc:
        raise MalformedEvent(f"{where}.{exc.field}: {exc}") from exc


def _qms_lot(native: NativeEvent) -> LotQuality:
    return _record(native, "lot", QmsLot, QmsLot.canonical)


def _ref(lot: LotQuality) -> LotRef:
    return LotRef(id=lot.lot_id, material=lot.material_id, supplier=lot.supplier_id)


def _qms_status(native: NativeEvent) -> Event:
    lot = _qms_lot(native)
    before = None
    if previous := native.data.get("previous_status"):
        try:
            before = qms_translate(QMS_LOT_STATUS, lot.plant_id, previous, field="previous_status")
        except UnknownCode as exc:
            raise MalformedEvent(f"data.previous_status: {exc}") from exc
    payload = {"system": "QMS", "qualityStatus": lot.status.value, "changedAt": lot.changed_at.isoformat(),
               "previousQualityStatus": before and before.value}  # fmt: skip
    return _event(native, "qms", EventType.LOT_STATUS_CHANGED, _ref(lot), payload)


def _qms_inspection(native: NativeEvent) -> Event:
    inspection = _record(native, "inspection", QmsInspectionLot, QmsInspectionLot.canonical)
    payload = {**inspection.model_dump(mode="json"), "passed": inspection.passed}
    return _event(native, "qms", EventType.INSPECTION_COMPLETED, _ref(_qms_lot(native)), payload)


def _qms_record(kind: EventType, key: str, model: type[QmsNonconformance] | type[QmsHold]) -> Callable[..., Event]:
    def normalize(native: NativeEvent) -> Event:
        record = _record(native, key, model, model.canonical)
        return _event(native, "qms", kind, _ref(_qms_lot(native)), record)

    return normalize


class MesConsumed(BaseModel):
    lot_id: str
    material: str | None = None
    quantity: float
    unit: str


class MesCompletion(BaseModel):
    order_id: str
    lot_id: str
    material: str
    line: str
    quantity: float
    unit: str
    completed_at: datetime
    consumed: list[MesConsumed]


class MesScrap(BaseModel):
    lot_id: str
    order_id: str | None = None
    material: str
    line: str | None = None
    quantity: float
    unit: str
    reason: str


class WmsDockReceipt(BaseModel):
    lot_id: str
    material: str
    quantity: float
    unit: str
    purchase_order: str
    purchase_order_item: str
    supplier: str
    supplier_batch: str = ""
    handling_units: list[str]
    received_at: datetime


def _plain(source: str, kind: EventType, model: type[MesCompletion] | type[MesScrap] | type[WmsDockReceipt]
           ) -> Callable[..., Event]:  # fmt: skip
    """Events whose data is one flat record (MES production, the WMS dock): validated, kept as sent."""

    def normalize(native: NativeEvent) -> Event:
        record = _record(native, None, model, lambda record: record)
        payload = {"system": source.upper(), **record.model_dump(mode="json")}
        lot = LotRef(id=record.lot_id, material=record.material, supplier=getattr(record, "supplier", None))
        return _event(native, source, kind, lot, payload)

    return normalize


NORMALIZERS: Mapping[str, Mapping[str, Callable[[NativeEvent], Event]]] = {
    "qms": {
        "lot.status_changed": _qms_status,
        "inspection.completed": _qms_inspection,
        "nonconformance.opened": _qms_record(EventType.NONCONFORMANCE_OPENED, "nonconformance", QmsNonconformance),
        "nonconformance.closed": _qms_record(EventType.NONCONFORMANCE_CLOSED, "nonconformance", QmsNonconformance),
        "hold.placed": _qms_record(EventType.HOLD_PLACED, "hold", QmsHold),
        "hold.released": _qms_record(EventType.HOLD_RELEASED, "hold", QmsHold),
    },
    "mes": {
        "production.completed": _plain("mes", EventType.PRODUCTION_COMPLETED, MesCompletion),
        "production.scrapped": _plain("mes", EventType.SCRAP_CONFIRMED, MesScrap),
    },
    "wms": {"goods.received": _plain("wms", EventType.GOODS_RECEIVED, WmsDockReceipt)},
}
PUSH_SOURCES = frozenset(NORMALIZERS)


def normalize(source: str, body: bytes | str) -> Event:
    """One native event (JSON) of `source` as a canonical event, or `RejectedEvent` saying why not."""
    try:
        native = NativeEvent.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedEvent(_first_problem(exc)) from exc
    normalizer = NORMALIZERS[source].get(native.type)
    if normalizer is None:
        known = ", ".join(sorted(NORMALIZERS[source]))
        raise UnknownEventType(f"unknown {source} event type '{native.type}' (known: {known})")
    try:
        return normalizer(native)
    except MalformedEvent as exc:
        raise MalformedEvent(f"{native.type}: {exc}") from exc


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"
