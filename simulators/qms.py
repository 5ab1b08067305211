"""The QMS simulator: lot quality records, inspection lots, nonconformances and holds over JSON REST.

Its quirk is the plant dialect: plant P100 still reports statuses as numeric codes, the newer plants as
text labels, so a client has to normalise per plant. Records are kept canonical and translated on output.
Every change is also announced as an event (`simulators.events`), in the same dialect as the REST answers.
QMS learns of new lots only when a client creates their inspection lot; its own quality engineers place and release
holds here too (origin `QMS`), next to the holds clients post.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.admin import build_app
from simulators.catalog import CHARACTERISTICS
from simulators.credentials import Credentials
from simulators.dataset import Dataset, Hold, InspectionLot, Nonconformance, QualityStatus
from simulators.events import Emitter
from simulators.records import Characteristic, UsageDecision
from simulators.web import bulk, iso, json_object, query_int, split_keys

NUMERIC_PLANTS = {"P100"}
# canonical value -> (P100 numeric code, label used by the other plants)
LOT_STATUS = {
    "IN_INSPECTION": ("10", "Under inspection"),
    "RELEASED": ("20", "Released"),
    "REJECTED": ("30", "Rejected"),
    "BLOCKED": ("40", "Blocked"),
}
INSPECTION_STATUS = {
    "CREATED": ("1", "Created"),
    "RESULTS_RECORDED": ("2", "Results recorded"),
    "DECIDED": ("3", "Decision made"),
}
NC_STATE = {"OPEN": ("1", "Open"), "IN_INVESTIGATION": ("2", "In investigation"), "CLOSED": ("3", "Closed")}
HOLD_STATUS = {"ACTIVE": ("1", "Active"), "RELEASED": ("2", "Released")}
# Disposition decision -> the lot status it leaves.
DISPOSITION_STATUS = {"RELEASE": "RELEASED", "SCRAP": "REJECTED", "RETURN_TO_SUPPLIER": "REJECTED", "REWORK": "BLOCKED"}
FROM_QUALITY = {
    QualityStatus.IN_INSPECTION: "IN_INSPECTION",
    QualityStatus.RELEASED: "RELEASED",
    QualityStatus.REJECTED: "REJECTED",
    QualityStatus.ON_HOLD: "BLOCKED",
}
SEVERITIES = ("minor", "major", "critical")
ORIGINS = ("01", "04")  # inspection lot origins: 01 goods receipt from a supplier, 04 production
DEFAULT_LIMIT, MAX_LIMIT = 100, 10_000
# An event announcing a change: (type, name of the changed record in the event data, the record rendered).
Cause = tuple[str, str, dict[str, Any]]


def native(table: Mapping[str, tuple[str, str]], value: str, plant: str) -> str:
    """A canonical status in the dialect of `plant`."""
    code, label = table[value]
    return code if plant in NUMERIC_PLANTS else label


@dataclass(frozen=True, slots=True)
class QualityRecord:
    lot_id: str
    plant: str
    material: str
    supplier: str
    status: str  # canonical: IN_INSPECTION / RELEASED / REJECTED / BLOCKED
    status_changed_at: datetime


class _PerLot(Protocol):
    @property
    def lot(self) -> str: ...


R = TypeVar("R", bound=_PerLot)


def _by_lot(records: Mapping[str, R]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for record_id, record in records.items():
        index.setdefault(record.lot, []).append(record_id)
    return index


def _select(request: Request, records: Mapping[str, R], by_lot: Mapping[str, list[str]]) -> list[R]:
    """Records named by `ids` and/or belonging to `lot_ids` (both given: both must hold)."""
    ids, lot_ids = split_keys(request.query_params.get("ids")), split_keys(request.query_params.get("lot_ids"))
    if not ids and not lot_ids:
        raise HTTPException(400, "give ids or lot_ids")
    chosen = ids or [record_id for lot in lot_ids for record_id in by_lot.get(lot, ())]
    wanted_lots = set(lot_ids)
    return [records[i] for i in chosen if i in records and (not wanted_lots or records[i].lot in wanted_lots)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _valuated(characteristic: Characteristic, result: float) -> Characteristic:
    """The characteristic with its result: valuation A within the limits (inclusive), R outside."""
    passed = characteristic.lower_limit <= result <= characteristic.upper_limit
    return replace(characteristic, result=result, valuation="A" if passed else "R")


def _text(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise HTTPException(400, f"{field} must be a non-empty string")
    return value


class Qms:
    """The QMS state, its changes (each announced through `events`) and request handlers."""

    def __init__(self, dataset: Dataset, events: Emitter) -> None:
        self.events = events
        self.inspection_lots: dict[str, InspectionLot] = dict(dataset.inspection_lots)
        self.nonconformances: dict[str, Nonconformance] = dict(dataset.nonconformances)
        self.holds: dict[str, Hold] = dict(dataset.holds)
        self.inspections_by_lot = _by_lot(self.inspection_lots)
        self.ncs_by_lot = _by_lot(self.nonconformances)
        self.holds_by_lot = _by_lot(self.holds)
        self.materials, self.plants = set(dataset.materials), set(dataset.plants)
        # request_id -> id of what the request created, so a retried request answers the first result
        self.requests: dict[str, str] = {}  # holds
        self.inspection_requests: dict[str, str] = {}
        self.nc_requests: dict[str, str] = {}
        self.dispositions: dict[str, dict[str, str]] = {}  # request_id -> the recorded usage decision
        self.before_hold: dict[str, str] = {}  # status to restore once the last active hold is released
        self.justifications: dict[str, str] = {}  # hold id -> why it was released
        self.closers: dict[str, str] = {}  # nonconformance id -> who closed it here
        self.last_hold = len(self.holds)
        self.last_nc = len(self.nonconformances)
        self.last_inspection = max((int(i[2:]) for i in self.inspection_lots), default=0)
        self.plans: dict[str, tuple[Characteristic, ...]] = {}  # material -> its inspection plan, without results
        for inspection in self.inspection_lots.values():
            if inspection.material not in self.plans:
                blank = tuple(replace(c, result=None, valuation=None) for c in inspection.characteristics)
                self.plans[inspection.material] = blank
        changed: dict[str, datetime] = {}
        for inspection in self.inspection_lots.values():
            if inspection.usage_decision is not None:
                changed[inspection.lot] = inspection.usage_decision.decided_at
        for hold in self.holds.values():
            if hold.status == "ACTIVE":
                changed[hold.lot] = hold.placed_at
        self.lots = {
            lot.id: QualityRecord(
                lot.id,
                lot.plant,
                lot.material,
                lot.supplier,
                FROM_QUALITY[dataset.status_in("qms", lot.id)],
                changed.get(lot.id, lot.manufactured_at),
            )
            for lot in dataset.lots.values()
        }

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/lots", self.get_lots, methods=["GET"]),
            Route("/api/v1/inspection-lots", self.get_inspection_lots, methods=["GET"]),
            Route("/api/v1/inspection-lots", self.post_inspection_lot, methods=["POST"]),
            Route("/api/v1/inspection-lots/{inspection_id}/results", self.post_results, methods=["POST"]),
            Route("/api/v1/nonconformances", self.get_nonconformances, methods=["GET"]),
            Route("/api/v1/nonconformances", self.post_nonconformance, methods=["POST"]),
            Route("/api/v1/nonconformances/{nc_id}/close", self.post_close, methods=["POST"]),
            Route("/api/v1/holds", self.get_holds, methods=["GET"]),
            Route("/api/v1/holds", self.post_hold, methods=["POST"]),
            Route("/api/v1/holds/bulk", self.post_holds, methods=["POST"]),
            Route("/api/v1/holds/{hold_id}/release", self.post_release, methods=["POST"]),
            Route("/api/v1/lots/{lot_id}/disposition", self.record_disposition, methods=["POST"]),
        ]

    # -- rendering

    @staticmethod
    def render_lot(r: QualityRecord) -> dict[str, Any]:
        return {
            "lot_id": r.lot_id,
            "plant": r.plant,
            "material": r.material,
            "supplier": r.supplier,
            "status": native(LOT_STATUS, r.status, r.plant),
            "status_changed_at": iso(r.status_changed_at),
        }

    @staticmethod
    def render_inspection(i: InspectionLot) -> dict[str, Any]:
        decision = i.usage_decision
        return {
            "id": i.id,
            "lot_id": i.lot,
            "plant": i.plant,
            "material": i.material,
            "origin": i.origin,
            "status": native(INSPECTION_STATUS, i.status, i.plant),
            "created_at": iso(i.created_at),
            "quantity": i.quantity,
            "unit": i.unit,
            "characteristics": [
                {
                    "code": c.code,
                    "description": c.description,
                    "unit": c.unit,
                    "lower_limit": c.lower_limit,
                    "upper_limit": c.upper_limit,
                    "result": c.result,
                    "valuation": c.valuation,
                }
                for c in i.characteristics
            ],
            "usage_decision": None
            if decision is None
            else {"code": decision.code, "decided_by": decision.decided_by, "decided_at": iso(decision.decided_at)},
        }

    @staticmethod
    def render_nc(n: Nonconformance) -> dict[str, Any]:
        return {
            "id": n.id,
            "lot_id": n.lot,
            "plant": n.plant,
            "category": n.category,
            "severity": n.severity,
            "state": native(NC_STATE, n.state, n.plant),
            "description": n.description,
            "opened_at": iso(n.opened_at),
            "closed_at": iso(n.closed_at),
        }

    @staticmethod
    def render_hold(h: Hold) -> dict[str, Any]:
        return {
            "id": h.id,
            "lot_id": h.lot,
            "plant": h.plant,
            "status": native(HOLD_STATUS, h.status, h.plant),
            "reason_code": h.reason_code,
            "reason": h.reason,
            "placed_by": h.placed_by,
            "placed_at": iso(h.placed_at),
            "released_by": h.released_by,
            "released_at": iso(h.released_at),
            "origin": h.origin,
        }

    # -- reads

    async def get_lots(self, request: Request) -> Response:
        params = request.query_params
        ids = split_keys(params.get("ids"))
        records = (
            [self.lots[i] for i in sorted(ids) if i in self.lots]
            if ids
            else sorted(self.lots.values(), key=lambda r: r.lot_id)
        )
        statuses = set(split_keys(params.get("status")))
        plants, materials, suppliers = (set(split_keys(params.get(name))) for name in ("plant", "material", "supplier"))
        matching = [
            r
            for r in records
            if (not statuses or native(LOT_STATUS, r.status, r.plant) in statuses)
            and (not plants or r.plant in plants)
            and (not materials or r.material in materials)
            and (not suppliers or r.supplier in suppliers)
        ]
        offset = query_int(request, "offset", 0)
        limit = query_int(request, "limit", len(ids) if ids else DEFAULT_LIMIT, MAX_LIMIT)
        page = matching[offset : offset + limit]
        return JSONResponse({"items": [self.render_lot(r) for r in page], "total": len(matching)})

    async def get_inspection_lots(self, request: Request) -> Response:
        found = _select(request, self.inspection_lots, self.inspections_by_lot)
        return JSONResponse({"items": [self.render_inspection(i) for i in found]})

    async def get_nonconformances(self, request: Request) -> Response:
        found = _select(request, self.nonconformances, self.ncs_by_lot)
        return JSONResponse({"items": [self.render_nc(n) for n in found]})

    async def get_holds(self, request: Request) -> Response:
        found = _select(request, self.holds, self.holds_by_lot)
        return JSONResponse({"items": [self.render_hold(h) for h in found]})

    # -- writes

    def active_holds(self, lot_id: str) -> list[Hold]:
        return [self.holds[h] for h in self.holds_by_lot.get(lot_id, ()) if self.holds[h].status == "ACTIVE"]

    def announce(self, lot_id: str, cause: Cause) -> None:
        """Emit `cause` with the lot as it is now."""
        kind, name, rendered = cause
        record = self.lots[lot_id]
        self.events.emit(kind, record.plant, {name: rendered, "lot": self.render_lot(record)}, lots=(lot_id,))

    def set_status(self, lot_id: str, status: str, at: datetime, *causes: Cause) -> None:
        """Change the lot's status. What caused the change is announced first (showing the lot as changed), then
        `lot.status_changed` if the status is really a different one."""
        previous = self.lots[lot_id]
        record = self.lots[lot_id] = replace(previous, status=status, status_changed_at=at)
        for cause in causes:
            self.announce(lot_id, cause)
        if previous.status != status:
            previous_status = native(LOT_STATUS, previous.status, record.plant)
            self.events.emit(
                "lot.status_changed", record.plant,
                {"lot": self.render_lot(record), "previous_status": previous_status}, lots=(lot_id,),
            )  # fmt: skip

    def place_hold(
        self,
        lot_id: str,
        reason_code: str,
        reason: str,
        placed_by: str,
        origin: str = "QMS",
        request_id: str | None = None,
    ) -> Hold:
        """Block the lot with a new active hold, announced as `hold.placed`; a repeated `request_id` answers the
        hold it placed first."""
        if request_id in self.requests:
            return self.holds[self.requests[request_id]]
        record = self.lots.get(lot_id)
        if record is None:
            raise HTTPException(404, f"lot {lot_id} is unknown to QMS")
        now = datetime.now(UTC)
        if not self.active_holds(record.lot_id) and record.status != "BLOCKED":
            self.before_hold[record.lot_id] = record.status
        self.last_hold += 1
        hold = Hold(
            f"QH-{self.last_hold:06d}",
            record.lot_id,
            record.plant,
            "ACTIVE",
            reason_code,
            reason,
            placed_by,
            now,
            None,
            None,
            origin,
        )
        self.holds[hold.id] = hold
        self.holds_by_lot.setdefault(hold.lot, []).append(hold.id)
        if request_id is not None:
            self.requests[request_id] = hold.id
        self.set_status(record.lot_id, "BLOCKED", now, ("hold.placed", "hold", self.render_hold(hold)))
        return hold

    def release_hold(self, hold_id: str, released_by: str, justification: str) -> Hold:
        """Release an active hold (`hold.released`); the lot returns to the status it had before its holds once
        none is left. Releasing a released hold again just answers it (an idempotent retry)."""
        hold = self.holds.get(hold_id)
        if hold is None:
            raise HTTPException(404, f"hold {hold_id} does not exist")
        if hold.status == "ACTIVE":
            now = datetime.now(UTC)
            self.justifications[hold.id] = justification
            hold = replace(hold, status="RELEASED", released_by=released_by, released_at=now)
            self.holds[hold.id] = hold
            released = ("hold.released", "hold", self.render_hold(hold))
            if self.active_holds(hold.lot):
                self.announce(hold.lot, released)
            else:
                self.set_status(hold.lot, self.before_hold.pop(hold.lot, "RELEASED"), now, released)
        return hold

    def placement(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A hold placement request: `201` and the new hold, `200` and the first one for a repeated request id."""
        request_id = _text(body, "request_id") if "request_id" in body else None
        if request_id in self.requests:
            return 200, self.render_hold(self.holds[self.requests[request_id]])
        fields = {f: _text(body, f) for f in ("lot_id", "reason_code", "reason", "placed_by")}
        origin = _text(body, "origin") if "origin" in body else "QMS"
        return 201, self.render_hold(self.place_hold(**fields, origin=origin, request_id=request_id))

    async def post_hold(self, request: Request) -> Response:
        status, hold = self.placement(await json_object(request))
        return JSONResponse(hold, status_code=status)

    async def post_holds(self, request: Request) -> Response:
        return await bulk(request, "holds", self.placement, "lot_id")

    async def post_release(self, request: Request) -> Response:
        body = await json_object(request)
        released_by, justification = _text(body, "released_by"), _text(body, "justification")
        hold = self.release_hold(request.path_params["hold_id"], released_by, justification)
        return JSONResponse(self.render_hold(hold))

    async def record_disposition(self, request: Request) -> Response:
        """A usage decision on the lot: RELEASE releases its holds; SCRAP and RETURN_TO_SUPPLIER reject it;
        REWORK keeps it blocked. A repeated `request_id` answers the first decision."""
        record = self.lots.get(request.path_params["lot_id"])
        if record is None:
            raise HTTPException(404, f"lot {request.path_params['lot_id']} is unknown to QMS")
        body = await json_object(request)
        decision, decided_by = _text(body, "decision"), _text(body, "decided_by")
        if decision not in DISPOSITION_STATUS:
            raise HTTPException(400, f"decision must be one of {', '.join(DISPOSITION_STATUS)}")
        request_id = _text(body, "request_id")
        if request_id not in self.dispositions:
            now = datetime.now(UTC)
            released: list[Cause] = []
            if decision == "RELEASE":
                for hold in self.active_holds(record.lot_id):
                    self.holds[hold.id] = replace(hold, status="RELEASED", released_by=decided_by, released_at=now)
                    released.append(("hold.released", "hold", self.render_hold(self.holds[hold.id])))
                self.before_hold.pop(record.lot_id, None)
            self.set_status(record.lot_id, DISPOSITION_STATUS[decision], now, *released)
            self.dispositions[request_id] = {"lot_id": record.lot_id, "decision": decision, "decided_by": decided_by,
                                             "reason": _text(body, "reason"), "decided_at": iso(now)}  # fmt: skip
        disposition = self.dispositions[request_id]
        return JSONResponse(
            {**disposition, "status": native(LOT_STATUS, self.lots[record.lot_id].status, record.plant)}
        )

    def record_results(self, inspection_id: str, results: Mapping[str, float], decided_by: str) -> InspectionLot:
        """Record a result for every characteristic (valuated A within the limits, R outside) and make the usage
        decision: A if all pass, else R. The lot becomes released or rejected; a lot under an active hold stays
        blocked and returns to the decided status once its holds are released."""
        inspection = self.inspection_lots.get(inspection_id)
        if inspection is None:
            raise HTTPException(404, f"inspection lot {inspection_id} does not exist")
        if inspection.status == "DECIDED":
            raise HTTPException(409, f"inspection lot {inspection_id} already has a usage decision")
        codes = {c.code for c in inspection.characteristics}
        if set(results) != codes:
            missing, unknown = sorted(codes - set(results)), sorted(set(results) - codes)
            raise HTTPException(
                400, f"results must cover exactly {sorted(codes)} (missing {missing}, unknown {unknown})"
            )
        now = datetime.now(UTC)
        characteristics = tuple(_valuated(c, results[c.code]) for c in inspection.characteristics)
        accepted = all(c.valuation == "A" for c in characteristics)
        decided = replace(
            inspection,
            status="DECIDED",
            characteristics=characteristics,
            usage_decision=UsageDecision("A" if accepted else "R", decided_by, now),
        )
        self.inspection_lots[decided.id] = decided
        status = "RELEASED" if accepted else "REJECTED"
        completed = ("inspection.completed", "inspection", self.render_inspection(decided))
        if self.active_holds(decided.lot):
            self.before_hold[decided.lot] = status
            self.announce(decided.lot, completed)
        else:
            self.set_status(decided.lot, status, now, completed)
        return decided

    def open_nonconformance(
        self, lot_id: str, category: str, severity: str, description: str, request_id: str | None = None
    ) -> Nonconformance:
        """Open a nonconformance on the lot (`nonconformance.opened`); a repeated `request_id` answers the first."""
        if request_id in self.nc_requests:
            return self.nonconformances[self.nc_requests[request_id]]
        record = self.lots.get(lot_id)
        if record is None:
            raise HTTPException(404, f"lot {lot_id} is unknown to QMS")
        if severity not in SEVERITIES:
            raise HTTPException(400, f"severity must be one of {', '.join(SEVERITIES)}")
        self.last_nc += 1
        nc = Nonconformance(
            f"NC-{self.last_nc:06d}",
            lot_id,
            record.plant,
            category,
            severity,
            "OPEN",
            description,
            datetime.now(UTC),
            None,
        )
        self.nonconformances[nc.id] = nc
        self.ncs_by_lot.setdefault(lot_id, []).append(nc.id)
        if request_id is not None:
            self.nc_requests[request_id] = nc.id
        self.announce(lot_id, ("nonconformance.opened", "nonconformance", self.render_nc(nc)))
        return nc

    def close_nonconformance(self, nc_id: str, closed_by: str) -> Nonconformance:
        """Close it; closing a closed nonconformance again just answers it (and announces nothing)."""
        nc = self.nonconformances.get(nc_id)
        if nc is None:
            raise HTTPException(404, f"nonconformance {nc_id} does not exist")
        if nc.state != "CLOSED":
            nc = self.nonconformances[nc_id] = replace(nc, state="CLOSED", closed_at=datetime.now(UTC))
            self.closers[nc_id] = closed_by
            self.announce(nc.lot, ("nonconformance.closed", "nonconformance", self.render_nc(nc)))
        return nc

    def plan(self, material: str) -> tuple[Characteristic, ...]:
        """The material's inspection plan; one drawn like the dataset's (2 to 4 characteristics) if it has none."""
        if material not in self.plans:
            rng = random.Random(material)
            drawn = rng.sample(CHARACTERISTICS, rng.randint(2, 4))
            self.plans[material] = tuple(Characteristic(*c, result=None, valuation=None) for c in drawn)
        return self.plans[material]

    def create_inspection_lot(
        self,
        lot_id: str,
        material: str,
        plant: str,
        origin: str,
        request_id: str,
        supplier: str = "",
        quantity: float | None = None,
        unit: str | None = None,
    ) -> InspectionLot:
        """A new inspection lot (status CREATED) for the material's plan, on a goods receipt (origin 01) or a
        production (04). A lot QMS does not know yet enters it in inspection (`lot.status_changed`). Refused (409)
        while the lot has an undecided inspection lot of that origin; a repeated `request_id` answers the first."""
        if request_id in self.inspection_requests:
            return self.inspection_lots[self.inspection_requests[request_id]]
        if origin not in ORIGINS:
            raise HTTPException(400, f"origin must be one of {', '.join(ORIGINS)}")
        if material not in self.materials:
            raise HTTPException(400, f"material {material} does not exist")
        if plant not in self.plants:
            raise HTTPException(400, f"plant {plant} does not exist")
        known = self.lots.get(lot_id)
        if known is not None and (known.material, known.plant) != (material, plant):
            raise HTTPException(400, f"lot {lot_id} is {known.material} in {known.plant}, not {material} in {plant}")
        for inspection_id in self.inspections_by_lot.get(lot_id, ()):
            pending = self.inspection_lots[inspection_id]
            if pending.origin == origin and pending.status != "DECIDED":
                raise HTTPException(
                    409, f"lot {lot_id} already has inspection lot {pending.id} (origin {origin}) undecided"
                )
        now = datetime.now(UTC)
        self.last_inspection += 1
        inspection = InspectionLot(
            f"{origin}{self.last_inspection:010d}",
            lot_id,
            plant,
            material,
            origin,
            "CREATED",
            now,
            self.plan(material),
            None,
            quantity,
            unit,
        )
        self.inspection_lots[inspection.id] = inspection
        self.inspections_by_lot.setdefault(lot_id, []).append(inspection.id)
        self.inspection_requests[request_id] = inspection.id
        if known is None:
            record = self.lots[lot_id] = QualityRecord(lot_id, plant, material, supplier, "IN_INSPECTION", now)
            changed = {"lot": self.render_lot(record), "previous_status": None}
            self.events.emit("lot.status_changed", plant, changed, lots=(lot_id,))
        return inspection

    async def post_inspection_lot(self, request: Request) -> Response:
        body = await json_object(request)
        request_id = _text(body, "request_id")
        if request_id in self.inspection_requests:
            return JSONResponse(self.render_inspection(self.inspection_lots[self.inspection_requests[request_id]]))
        fields = {f: _text(body, f) for f in ("lot_id", "material", "plant", "origin")}
        supplier, quantity, unit = body.get("supplier", ""), body.get("quantity"), body.get("unit")
        if not isinstance(supplier, str):
            raise HTTPException(400, "supplier must be a string")
        if quantity is not None and not (_is_number(quantity) and quantity > 0):
            raise HTTPException(400, "quantity must be a positive number")
        if unit is not None and not (isinstance(unit, str) and unit):
            raise HTTPException(400, "unit must be a non-empty string")
        inspection = self.create_inspection_lot(
            **fields,
            request_id=request_id,
            supplier=supplier,
            quantity=None if quantity is None else float(quantity),
            unit=unit,
        )
        return JSONResponse(self.render_inspection(inspection), status_code=201)

    async def post_results(self, request: Request) -> Response:
        body = await json_object(request)
        results, decided_by = body.get("results"), _text(body, "decided_by")
        if not isinstance(results, list) or not all(
            isinstance(r, dict) and isinstance(r.get("code"), str) and _is_number(r.get("result")) for r in results
        ):
            raise HTTPException(400, 'results must be a list of {"code": <characteristic>, "result": <number>}')
        by_code = {r["code"]: float(r["result"]) for r in results}
        if len(by_code) != len(results):
            raise HTTPException(400, "each characteristic takes one result")
        inspection = self.record_results(request.path_params["inspection_id"], by_code, decided_by)
        return JSONResponse(self.render_inspection(inspection))

    async def post_nonconformance(self, request: Request) -> Response:
        body = await json_object(request)
        request_id = _text(body, "request_id") if "request_id" in body else None
        if request_id in self.nc_requests:
            return JSONResponse(self.render_nc(self.nonconformances[self.nc_requests[request_id]]))
        fields = {f: _text(body, f) for f in ("lot_id", "category", "severity", "description")}
        nc = self.open_nonconformance(**fields, request_id=request_id)
        return JSONResponse(self.render_nc(nc), status_code=201)

    async def post_close(self, request: Request) -> Response:
        body = await json_object(request)
        nc = self.close_nonconformance(request.path_params["nc_id"], _text(body, "closed_by"))
        return JSONResponse(self.render_nc(nc))

    def lot_state(self, lot_id: str) -> dict[str, Any] | None:
        record = self.lots.get(lot_id)
        if record is None:
            return None
        return {
            "lot_id": record.lot_id,
            "plant": record.plant,
            "status": record.status,
            "status_changed_at": iso(record.status_changed_at),
            "holds": [
                {"id": h, "status": self.holds[h].status, "justification": self.justifications.get(h)}
                for h in self.holds_by_lot.get(lot_id, ())
            ],
            "nonconformances": [
                {"id": n, "state": self.nonconformances[n].state, "closed_by": self.closers.get(n)}
                for n in self.ncs_by_lot.get(lot_id, ())
            ],
        }


def create_app(dataset: Dataset, *, credentials: Credentials | None = None) -> Starlette:
    """The QMS simulator; `credentials` makes it demand a token or API key. Its events are on the ISA-95 area
    `quality`, line `lab`."""
    qms = Qms(dataset, Emitter("qms", area="quality", line="lab"))
    app = build_app(qms.routes(), qms.lot_state, require_credentials=credentials, emitter=qms.events)
    app.state.qms = qms
    return app
