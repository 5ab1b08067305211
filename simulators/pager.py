"""The supervisors' pager: a small notification receiver of the simulated plant, independent of everything else.

It stands for whatever the plant's supervisors are alerted on (a pager gateway, a chat channel): it takes
Standard Webhooks POSTs at `/api/pages`, verifies each with its own secret (the `standardwebhooks` reference
library; a bad signature or a stale timestamp is 401) and keeps what it was sent, once per `webhook-id` (a
sender's retry of one message is a duplicate, answered 200). `GET /_admin/pages` lists what it received, newest
last (`?plant=P100` for one plant's supervisors); `/_admin/lots/{lot}` the pages about a lot. It shares the other
simulators' admin API, so tests and the demo can make it fail (`/_admin/faults`).
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.admin import ADMIN_PREFIX, build_app
from simulators.web import iso, rest_error

KEPT = 10_000  # pages remembered (the oldest go first)
SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class Pager:
    def __init__(self, secret: str) -> None:
        self.verifier = Webhook(secret)
        self.pages: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.seen: set[str] = set()

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        try:
            message = self.verifier.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError) as exc:  # ValueError: a signature that is not base64
            return JSONResponse(rest_error(401, f"signature refused: {exc}"), status_code=401)
        message_id = request.headers["webhook-id"]
        if message_id in self.seen:
            return JSONResponse({"status": "duplicate", "id": message_id})
        if len(self.seen) >= KEPT:
            self.seen.discard(self.pages[0]["id"])
        self.seen.add(message_id)
        data = message.get("data") or {}
        signed = {name: request.headers[name] for name in SIGNED_HEADERS}
        self.pages.append({
            "id": message_id, "received_at": iso(datetime.now(UTC)), "type": message.get("type"),
            "plant": data.get("plant"), "lot_id": data.get("lotId"), "message": message,
            "as_received": {"headers": signed, "body": body.decode()},  # for anyone who wants to check it again
        })  # fmt: skip
        return JSONResponse({"status": "paged", "id": message_id}, status_code=202)

    async def list_pages(self, request: Request) -> Response:
        plant = request.query_params.get("plant")
        return JSONResponse({"pages": [page for page in self.pages if plant in (None, page["plant"])]})

    def lot_state(self, lot_id: str) -> dict[str, Any] | None:
        about = [page for page in self.pages if page["lot_id"] == lot_id]
        return {"pages": about} if about else None

    def routes(self) -> list[Route]:
        return [
            Route("/api/pages", self.receive, methods=["POST"]),
            Route(f"{ADMIN_PREFIX}/pages", self.list_pages, methods=["GET"]),
        ]


def create_app(secret: str) -> Starlette:
    """The pager, verifying what it receives with `secret` (`whsec_...`, the one its sender signs with)."""
    pager = Pager(secret)
    app = build_app(pager.routes(), pager.lot_state)
    app.state.pager = pager
    return app
