"""Every source's and every plant's status codes, mapped onto the canonical enums in one place.

Adding a plant or a dialect is one entry here; nothing else in the gateway knows native codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from gateway.model import (
    HoldStatus,
    InspectionStatus,
    MaterialClass,
    NonconformanceState,
    QualityStatus,
    StockStatus,
    UsageDecisionCode,
)

E = TypeVar("E", bound=Enum)


class UnknownCode(ValueError):
    """A native code with no canonical meaning; contracts report it as a violation of `field`."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field


# QMS: plant P100 reports numeric codes, P200 and P300 text labels.
_QMS_NUMERIC = "numeric"
_QMS_LABELS = "labels"
QMS_PLANT_DIALECT: Mapping[str, str] = {"P100": _QMS_NUMERIC, "P200": _QMS_LABELS, "P300": _QMS_LABELS}

QMS_LOT_STATUS: Mapping[str, Mapping[str, QualityStatus]] = {
    _QMS_NUMERIC: {
        "10": QualityStatus.IN_INSPECTION,
        "20": QualityStatus.RELEASED,
        "30": QualityStatus.REJECTED,
        "40": QualityStatus.ON_HOLD,
    },
    _QMS_LABELS: {
        "Under inspection": QualityStatus.IN_INSPECTION,
        "Released": QualityStatus.RELEASED,
        "Rejected": QualityStatus.REJECTED,
        "Blocked": QualityStatus.ON_HOLD,
    },
}
QMS_INSPECTION_STATUS: Mapping[str, Mapping[str, InspectionStatus]] = {
    _QMS_NUMERIC: {
        "1": InspectionStatus.CREATED,
        "2": InspectionStatus.RESULTS_RECORDED,
        "3": InspectionStatus.DECIDED,
    },
    _QMS_LABELS: {
        "Created": InspectionStatus.CREATED,
        "Results recorded": InspectionStatus.RESULTS_RECORDED,
        "Decision made": InspectionStatus.DECIDED,
    },
}
QMS_NONCONFORMANCE_STATE: Mapping[str, Mapping[str, NonconformanceState]] = {
    _QMS_NUMERIC: {
        "1": NonconformanceState.OPEN,
        "2": NonconformanceState.INVESTIGATING,
        "3": NonconformanceState.CLOSED,
    },
    _QMS_LABELS: {
        "Open": NonconformanceState.OPEN,
        "In investigation": NonconformanceState.INVESTIGATING,
        "Closed": NonconformanceState.CLOSED,
    },
}
QMS_HOLD_STATUS: Mapping[str, Mapping[str, HoldStatus]] = {
    _QMS_NUMERIC: {"1": HoldStatus.ACTIVE, "2": HoldStatus.RELEASED},
    _QMS_LABELS: {"Active": HoldStatus.ACTIVE, "Released": HoldStatus.RELEASED},
}
QMS_USAGE_DECISION: Mapping[str, UsageDecisionCode] = {
    "A": UsageDecisionCode.ACCEPTED,
    "R": UsageDecisionCode.REJECTED,
}

ERP_STOCK_TYPE: Mapping[str, StockStatus] = {
    "01": StockStatus.AVAILABLE,
    "02": StockStatus.QUALITY_INSPECTION,
    "07": StockStatus.BLOCKED,
}
ERP_MATERIAL_TYPE: Mapping[str, MaterialClass] = {
    "ROH": MaterialClass.RAW_MATERIAL,
    "HALB": MaterialClass.INTERMEDIATE,
    "FERT": MaterialClass.FINISHED_GOOD,
}

WMS_V1_STATUS: Mapping[str, StockStatus] = {
    "AVAILABLE": StockStatus.AVAILABLE,
    "QUARANTINE": StockStatus.QUALITY_INSPECTION,
    "BLOCKED": StockStatus.BLOCKED,
    "DAMAGED": StockStatus.BLOCKED,
}
WMS_V2_STATUS: Mapping[str, StockStatus] = {
    "available": StockStatus.AVAILABLE,
    "quarantine": StockStatus.QUALITY_INSPECTION,
    "blocked": StockStatus.BLOCKED,
    "damaged": StockStatus.BLOCKED,
}

MES_LOT_STATUS: Mapping[str, QualityStatus] = {
    "QC_PENDING": QualityStatus.IN_INSPECTION,
    "RELEASED": QualityStatus.RELEASED,
    "REJECTED": QualityStatus.REJECTED,
    "HOLD": QualityStatus.ON_HOLD,
}


def translate(table: Mapping[str, E], code: object, *, field: str) -> E:
    """Look up a native code (numbers and strings alike) or raise `UnknownCode` naming `field`."""
    try:
        return table[str(code)]
    except KeyError:
        raise UnknownCode(field, f"has unknown code {code!r}") from None


def qms_translate(tables: Mapping[str, Mapping[str, E]], plant: str, code: object, *, field: str) -> E:
    """Translate a QMS code in the dialect of the plant that reported it."""
    dialect = QMS_PLANT_DIALECT.get(plant)
    if dialect is None:
        raise UnknownCode("plant", f"names plant {plant!r}, which has no QMS dialect configured")
    return translate(tables[dialect], code, field=field)


def qms_native_lot_statuses(status: QualityStatus) -> list[str]:
    """Every native QMS code, across dialects, that means `status` (for filtering upstream)."""
    return [code for table in QMS_LOT_STATUS.values() for code, value in table.items() if value is status]
