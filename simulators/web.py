"""Small HTTP helpers the simulators share: key lists, timestamps, JSON bodies and the REST error shape."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_BULK = 500  # items per bulk write: enough for a recall's batch, small enough for one request
Write = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]  # one item of a bulk write: its status and result


def split_keys(value: str | None) -> list[str]:
    """A comma-separated batch of keys, deduplicated in order, so one request can replace N look-ups."""
    if not value:
        return []
    return list(dict.fromkeys(key for key in (part.strip() for part in value.split(",")) if key))


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a `Z`, the timestamp format of the REST simulators."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def error_code(status: int) -> str:
    """A stable machine-readable code for a status, e.g. 404 -> `NOT_FOUND`."""
    try:
        return HTTPStatus(status).name
    except ValueError:
        return f"HTTP_{status}"


def rest_error(status: int, message: str) -> dict[str, Any]:
    """The JSON error body of the QMS, WMS and MES simulators."""
    return {"error": {"code": error_code(status), "message": message}}


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 the client can act on."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise HTTPException(400, "request body must be a JSON object")
    return body


async def bulk(request: Request, field: str, write: Write, lot_field: str) -> JSONResponse:
    """A bulk write: `{field: [item, ...]}` (1 to `MAX_BULK` objects), each item done or refused on its own by `write`
    (its status and result). Answers `200 {"items": [...]}` in request order, each `{"status", "result"}` or
    `{"status", "error": {"code", "message"}}`; only a malformed request as a whole is a `400`. An injected fault
    naming `lots` refuses the items whose `lot_field` is one of them (`Admin.refuses`)."""
    items = (await json_object(request)).get(field)
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BULK or not all(isinstance(i, dict) for i in items):
        raise HTTPException(400, f"{field} must be a list of 1 to {MAX_BULK} objects")
    admin = getattr(request.app.state, "admin", None)
    answers: list[dict[str, Any]] = []
    for item in items:
        try:
            if admin is not None and (status := admin.refuses(request.url.path, item.get(lot_field))):
                raise HTTPException(status, "injected error")
            status, result = write(item)
        except HTTPException as exc:
            answers.append({"status": exc.status_code, **rest_error(exc.status_code, exc.detail)})
        else:
            answers.append({"status": status, "result": result})
    return JSONResponse({"items": answers})


def query_int(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    """A non-negative integer query parameter (400 if it is not one), capped at `maximum`."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise HTTPException(400, f"{name} must be a non-negative integer")
    return int(raw) if maximum is None else min(int(raw), maximum)
