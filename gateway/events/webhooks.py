"""`POST /webhooks/{source}`: plant systems push their events here, signed per Standard Webhooks.

The signature (HMAC-SHA256 over id, timestamp and body, with the source's own secret) and its timestamp
(a five-minute replay window) are checked before the body is even parsed. Every refusal says why:
401 for a bad or stale signature, 400 for a body or type that cannot be normalized, 404 for a source this
gateway takes no events from. An accepted event is in the inbox (and, normally, on the bus) before the answer
(202, with its cursor); a duplicate id is answered 200 and has no second effect, so a sender's retry is always
safe. A gateway killed after the 202 still runs the event's reactions when it (or another replica) comes back.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.events.hub import Events
from gateway.events.normalize import PUSH_SOURCES, RejectedEvent, normalize


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status)


class WebhookEndpoint:
    def __init__(self, events: Events, secrets: Mapping[str, SecretStr]) -> None:
        self.events = events
        self.verifiers = {source: Webhook(secret.get_secret_value()) for source, secret in secrets.items()}

    async def receive(self, request: Request) -> JSONResponse:
        source = request.path_params["source"]
        if source not in PUSH_SOURCES:
            known = ", ".join(sorted(PUSH_SOURCES))
            return _refuse(404, "UNKNOWN_SOURCE", f"no events are taken from '{source}' (push sources: {known})")
        refused = self.events.metrics.events_rejected
        verifier = self.verifiers.get(source)
        if verifier is None:
            refused.labels(source, "WEBHOOK_NOT_CONFIGURED").inc()
            return _refuse(403, "WEBHOOK_NOT_CONFIGURED", f"no webhook secret is configured for {source}")
        body = await request.body()
        try:
            verifier.verify(body, dict(request.headers), json_parse=False)
        except (WebhookVerificationError, ValueError) as exc:  # ValueError: a signature that is not base64
            code = "STALE_WEBHOOK" if "timestamp" in str(exc).lower() else "BAD_SIGNATURE"
            refused.labels(source, code).inc()
            return _refuse(401, code, f"webhook refused: {exc}")
        try:
            event = normalize(source, body)
        except RejectedEvent as exc:
            refused.labels(source, exc.code).inc()
            return _refuse(400, exc.code, str(exc))
        stored = await self.events.ingest(event)
        if stored is None:
            return JSONResponse({"status": "duplicate", "id": event.id})
        return JSONResponse({"status": "accepted", "id": stored.id, "cursor": stored.cursor}, status_code=202)
