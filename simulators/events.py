"""Each emitting simulator's outbox: the plant events it raises as its state changes, delivered in order.

Real plant systems push their changes instead of waiting to be polled: a QMS calls a webhook, an MES publishes
to the plant's MQTT broker. An `Emitter` wraps every event in the system's own envelope and id, keeps it in a
bounded outbox and delivers it from one background task, either as a webhook signed the Standard Webhooks way or
as an MQTT message (QoS 1) on the ISA-95 topic `{enterprise}/{site}/{area}/{line}/{topic}`. A failed attempt is
retried with backoff until the receiver takes the event, so events arrive in the order they happened; one the
receiver refuses (4xx) is counted and skipped. With no target, events are counted as dropped and not kept:
configuring a target later never floods the receiver with history. The last events are listed with the lots
each is about (`/_admin/events`), so a test can tell which lots changed while the plant ran.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import httpx2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

OUTBOX_LIMIT = 100_000
RECENT = 1_000
FIRST_RETRY, LAST_RETRY = 0.05, 2.0  # seconds before the next attempt, doubling up to the cap
SEND_TIMEOUT = 5.0
RETRIED_4XX = frozenset({408, 429})  # "not now" rather than "never": tried again like a 5xx
TOPIC_LEVEL = r"^[^/+#]+$"  # one MQTT topic level: no separator, no wildcard


class WebhookTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://\S+$")
    secret: str = Field(repr=False)  # `whsec_` + base64, as Standard Webhooks issues them

    @field_validator("secret")
    @classmethod
    def _signing_key(cls, secret: str) -> str:
        try:
            Webhook(secret)
        except (ValueError, EmptyWebhookSecretError) as exc:
            raise ValueError(f"secret is not a usable signing key ({type(exc).__name__})") from None
        return secret

    def public(self) -> dict[str, Any]:
        return {"webhook": {"url": self.url}}


class MqttTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str  # mqtt://[user:password@]host[:port]
    enterprise: str = Field("acme", pattern=TOPIC_LEVEL)

    @field_validator("url")
    @classmethod
    def _broker(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname or parts.path not in ("", "/") or parts.port == 0:
            raise ValueError("url must look like mqtt://host:1883")
        return url

    def public(self) -> dict[str, Any]:
        parts = urlsplit(self.url)
        url = self.url
        if parts.password is not None:
            url = parts._replace(netloc=f"{parts.username}@{parts.netloc.rsplit('@', 1)[1]}").geturl()
        return {"mqtt": {"url": url, "enterprise": self.enterprise}}


class Target(BaseModel):
    """What `PUT /_admin/events` takes: `{"webhook": {...}}`, `{"mqtt": {...}}`, or `{}` for none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: WebhookTarget | None = None
    mqtt: MqttTarget | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> Target:
        if self.webhook is not None and self.mqtt is not None:
            raise ValueError("give webhook or mqtt, not both")
        return self


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    body: str  # the JSON envelope, serialized once: what is signed is exactly what is sent
    topic: str  # the MQTT topic below the enterprise: site/area/line/topic


class Retry(Exception):
    """The target did not take the event this time (5xx, 408, 429, no connection): try it again."""


class Emitter:
    """One simulator's outbox. `emit` and `configure` may be called from any thread. Delivery is one asyncio task,
    started in the running loop of whoever queues the first deliverable event (a request handler, the shift) and
    stopped by `aclose` (the app's shutdown)."""

    def __init__(self, system: str, area: str, line: str) -> None:
        self.system = system
        self.area = area  # ISA-95 area of every event (MES: production, QMS: quality)
        self.line = line  # ISA-95 line of events whose data names none
        self.lock = threading.Lock()
        self.target: WebhookTarget | MqttTarget | None = None
        self.outbox: deque[Event] = deque()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.sequence = self.delivered = self.rejected = self.dropped = 0
        self.last_rejection: dict[str, Any] | None = None
        self.worker: tuple[asyncio.Task[None], asyncio.Event] | None = None

    def emit(
        self, type: str, plant: str, data: dict[str, Any], topic: str | None = None, lots: Sequence[str] = ()
    ) -> str:
        """Queue one event about `lots` and return its id. `topic` ends the MQTT topic (default: `type` with dots
        as levels); the line level is `data["line"]` when the event names one."""
        with self.lock:
            self.sequence += 1
            event_id = f"{self.system.upper()}-EVT-{self.sequence:012d}"
            self.recent.append({"id": event_id, "type": type, "lots": list(lots)})
            if self.target is None or len(self.outbox) >= OUTBOX_LIMIT:
                self.dropped += 1
                return event_id
            envelope = {
                "id": event_id,
                "type": type,
                "source": self.system,
                "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "plant": plant,
                "data": data,
            }
            levels = (plant, self.area, str(data.get("line") or self.line), topic or type.replace(".", "/"))
            self.outbox.append(Event(event_id, json.dumps(envelope, separators=(",", ":")), "/".join(levels)))
        self.wake()
        return event_id

    def configure(self, target: dict[str, Any]) -> dict[str, Any] | None:
        """Send events to `target` from now on (raises pydantic's ValidationError); pending events go to the new
        target, or are dropped when events are turned off. Returns the target without its secret."""
        chosen = Target.model_validate(target)
        with self.lock:
            self.target = chosen.webhook or chosen.mqtt
            if self.target is None:
                self.dropped += len(self.outbox)
                self.outbox.clear()
        self.wake()
        return self.public_target()

    def public_target(self) -> dict[str, Any] | None:
        target = self.target
        return None if target is None else target.public()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "target": self.public_target(),
                "emitted": self.sequence,
                "delivered": self.delivered,
                "rejected": self.rejected,
                "dropped": self.dropped,
                "pending": len(self.outbox),
                "last_rejection": self.last_rejection,
                "recent": list(self.recent),
            }

    def wake(self) -> None:
        """Have the delivery task look at the outbox and the target again; start one in this thread's running loop
        if there is none and something is pending (without a loop, the next call from inside one starts it)."""
        with self.lock:
            if self.worker is not None:
                task, ready = self.worker
                if not task.done() and not task.get_loop().is_closed():
                    task.get_loop().call_soon_threadsafe(ready.set)
                    return
            if not self.outbox:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            ready = asyncio.Event()
            self.worker = (loop.create_task(self.deliver(ready)), ready)

    async def aclose(self) -> None:
        """Stop delivering; what has not been delivered stays pending."""
        with self.lock:
            worker, self.worker = self.worker, None
        if worker is None:
            return
        task = worker[0]
        if task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        elif not task.get_loop().is_closed():
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def deliver(self, ready: asyncio.Event) -> None:
        """The delivery task: offer the oldest pending event until the target takes or refuses it, then the next."""
        courier = Courier(self.system)
        backoff = FIRST_RETRY
        try:
            while True:
                ready.clear()
                with self.lock:
                    event, target = (self.outbox[0] if self.outbox else None), self.target
                await courier.keep_only(target)
                if event is None or target is None:
                    await ready.wait()
                    continue
                try:
                    rejection = await courier.send(target, event)
                except Retry:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, LAST_RETRY)
                    continue
                backoff = FIRST_RETRY
                with self.lock:
                    if not self.outbox or self.outbox[0] is not event:
                        continue  # dropped while in flight: events were turned off
                    self.outbox.popleft()
                    if rejection is None:
                        self.delivered += 1
                    else:
                        self.rejected += 1
                        self.last_rejection = rejection
        finally:
            await courier.aclose()


class Courier:
    """The delivery task's connections: one HTTP client, and one MQTT client while the target is a broker."""

    def __init__(self, system: str) -> None:
        self.identifier = f"lotgraph-{system}-{secrets.token_hex(4)}"
        self.http = httpx2.AsyncClient(timeout=SEND_TIMEOUT)
        self.mqtt: tuple[str, aiomqtt.Client] | None = None  # broker url, connected client

    async def send(self, target: WebhookTarget | MqttTarget, event: Event) -> dict[str, Any] | None:
        """None once the target has the event; the rejection if it refuses it for good; raises Retry otherwise."""
        if isinstance(target, WebhookTarget):
            return await self.post(target, event)
        await self.publish(target, event)
        return None

    async def post(self, target: WebhookTarget, event: Event) -> dict[str, Any] | None:
        sent_at = datetime.now(UTC).replace(microsecond=0)
        headers = {
            "content-type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Webhook(target.secret).sign(event.id, sent_at, event.body),
        }
        try:
            response = await self.http.post(target.url, content=event.body.encode(), headers=headers)
        except httpx2.HTTPError as exc:
            raise Retry from exc
        if response.is_success:
            return None
        if response.is_client_error and response.status_code not in RETRIED_4XX:
            return {"id": event.id, "status": response.status_code, "body": response.text[:2000]}
        raise Retry

    async def publish(self, target: MqttTarget, event: Event) -> None:
        try:
            client = await self.connected(target.url)
            await client.publish(f"{target.enterprise}/{event.topic}", event.body, qos=1, timeout=SEND_TIMEOUT)
        except aiomqtt.MqttError as exc:
            await self.disconnect()
            raise Retry from exc

    async def connected(self, url: str) -> aiomqtt.Client:
        if self.mqtt is not None and self.mqtt[0] == url:
            return self.mqtt[1]
        await self.disconnect()
        parts = urlsplit(url)
        client = aiomqtt.Client(
            parts.hostname or "",
            parts.port or 1883,
            username=parts.username,
            password=parts.password,
            identifier=self.identifier,
            timeout=SEND_TIMEOUT,
        )
        await client.__aenter__()
        self.mqtt = (url, client)
        return client

    async def keep_only(self, target: WebhookTarget | MqttTarget | None) -> None:
        """Close the MQTT connection unless `target` is still that broker."""
        if self.mqtt is not None and not (isinstance(target, MqttTarget) and target.url == self.mqtt[0]):
            await self.disconnect()

    async def disconnect(self) -> None:
        if self.mqtt is None:
            return
        client, self.mqtt = self.mqtt[1], None
        with suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(SEND_TIMEOUT):
                await client.__aexit__(None, None, None)

    async def aclose(self) -> None:
        await self.disconnect()
        await self.http.aclose()
