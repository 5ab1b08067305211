"""MES events from the plant's MQTT broker (ISA-95 topics: enterprise/site/area/line/...).

A persistent session (clean_session off, a stable client id per replica) and QoS 1 make the broker keep
what arrives while the gateway is away; a shared subscription (`$share/<group>/...`) gives each message to one
replica. Payloads are the MES's native events, normalized like its webhooks; one that cannot be normalized
is logged with the reason and counted (MQTT has no answer to send back), never half-ingested.

A message is acknowledged (PUBACK) only once the inbox has it: paho-mqtt's manual acknowledgement, which
aiomqtt 2.5 does not expose, is switched on in its paho client before connecting. If the inbox cannot take a
message the session is dropped unacknowledged, and the broker delivers it again when the gateway reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiomqtt

from gateway.errors import GatewayError
from gateway.events.hub import Events
from gateway.events.normalize import RejectedEvent, normalize
from gateway.events.settings import MqttSettings

log = logging.getLogger("lotgraph.events.mqtt")
SOURCE = "mes"
FIRST_RETRY_SECONDS = 0.5  # doubled after each failed attempt, up to 30 s


class MqttIngest:
    def __init__(self, settings: MqttSettings, events: Events, client_id: str) -> None:
        assert settings.url is not None
        self.settings = settings
        self.events = events
        self.client_id = settings.client_id or client_id
        self.url = urlsplit(settings.url)
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    name = "mqtt"

    @property
    def status(self) -> str:
        return "subscribed" if self.connected.is_set() else "connecting"

    def topics(self) -> list[str]:
        group = self.settings.shared_group
        return [f"$share/{group}/{topic}" if group else topic for topic in self.settings.topics]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lotgraph-mqtt")

    async def _run(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                await self._session()
            except (aiomqtt.MqttError, GatewayError) as exc:  # GatewayError: the inbox did not take a message
                if self.connected.is_set():  # the session was up: a new outage starts from the shortest wait
                    delay = FIRST_RETRY_SECONDS
                self.connected.clear()
                log.warning("MQTT broker %s: %s; reconnecting in %.1f s", self.url.hostname, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    async def _session(self) -> None:
        client = aiomqtt.Client(
            self.url.hostname or "127.0.0.1", port=self.url.port or (8883 if self.url.scheme == "mqtts" else 1883),
            identifier=self.client_id, clean_session=False, username=self.url.username, password=self.url.password,
            tls_params=aiomqtt.TLSParameters() if self.url.scheme == "mqtts" else None,
        )  # fmt: skip
        paho = client._client  # aiomqtt has no manual acknowledgement of its own
        paho.manual_ack_set(True)
        async with client:
            for topic in self.topics():
                await client.subscribe(topic, qos=1)
            self.connected.set()
            log.info("subscribed to %s at %s as %s", self.topics(), self.url.hostname, self.client_id)
            async for message in client.messages:
                await self._receive(str(message.topic), message.payload)
                paho.ack(message.mid, message.qos)  # the inbox has it (or it can never be normalized)

    async def _receive(self, topic: str, payload: object) -> None:
        if not isinstance(payload, bytes | bytearray | str):
            payload = b""
        try:
            event = normalize(SOURCE, bytes(payload) if not isinstance(payload, str) else payload)
        except RejectedEvent as exc:
            self.events.metrics.events_rejected.labels(SOURCE, exc.code).inc()
            log.warning("MQTT message on %s refused (%s): %s", topic, exc.code, exc)
            return
        await self.events.ingest(event)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
