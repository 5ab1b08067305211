"""One try of one delivery: the body POSTed to its target, signed the Standard Webhooks way.

The signature is the `standardwebhooks` reference implementation's (the library the inbound webhooks verify
with): HMAC-SHA256 over `webhook-id` (the delivery id, the same on every try, so a target can drop a repeat),
`webhook-timestamp` (this try's) and the body, with the target's own secret. A 2xx answer delivers it; anything
else (another status, a timeout, no connection) is a failed try the worker retries. Redirects are not followed:
a target moved is a configuration to change, not a hop to take with quality data.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2
from standardwebhooks.webhooks import Webhook

from gateway import __version__
from gateway.notifications.settings import TargetSettings
from gateway.store.outbox import Delivery

EXCERPT = 200  # characters of a refusal's body kept as its reason


@dataclass(frozen=True)
class Outcome:
    """How a try went: `kind` is the metrics' outcome label and, unless delivered, the reason's code."""

    kind: str  # delivered | refused | timeout | unreachable
    detail: str = ""

    @property
    def delivered(self) -> bool:
        return self.kind == "delivered"


class Sender:
    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.client = httpx2.AsyncClient(timeout=timeout_seconds, follow_redirects=False)

    async def send(self, target: TargetSettings, delivery: Delivery) -> Outcome:
        content = json.dumps(delivery.body, separators=(",", ":"))
        now = datetime.now(UTC)
        headers = {
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(target.secret.get_secret_value()).sign(delivery.id, now, content),
            "content-type": "application/json",
            "user-agent": f"lotgraph/{__version__}",
            **({"x-correlation-id": delivery.correlation_id} if delivery.correlation_id else {}),
        }
        try:
            async with asyncio.timeout(self.timeout_seconds):  # the whole try, not each phase of it
                response = await self.client.post(str(target.url), content=content, headers=headers)
        except (TimeoutError, httpx2.TimeoutException):
            return Outcome("timeout", f"no answer within {self.timeout_seconds:g} s")
        except httpx2.TransportError as exc:
            return Outcome("unreachable", f"{type(exc).__name__}: {exc}"[:EXCERPT])
        if response.is_success:
            return Outcome("delivered")
        excerpt = " ".join(response.text[:EXCERPT].split())
        return Outcome("refused", f"HTTP {response.status_code}" + (f": {excerpt}" if excerpt else ""))

    async def aclose(self) -> None:
        await self.client.aclose()
