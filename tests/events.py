"""Helpers for event tests: signed webhooks, native QMS events built from the dataset, a graphql-transport-ws
client, a GraphQL-over-SSE subscriber and a Prometheus metrics reader. Everything talks real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
import redis
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.auth import DevSigner
from gateway.events.settings import ContainmentSettings, EventSettings
from gateway.settings import Settings
from simulators import Dataset
from simulators.records import Lot

SECRET = "whsec_" + base64.b64encode(b"lotgraph-event-tests-secret-32b!").decode()
EVENT_FIELDS = (
    "id cursor type source plant lotId material supplier occurredAt ingestedAt correlationId schemaVersion payload"
)
QUALITY_EVENTS = f"""subscription($filter: QualityEventFilter, $after: String) {{
  qualityEvents(filter: $filter, after: $after) {{ {EVENT_FIELDS} }} }}"""
LOT_STATUS_CHANGED = f"""subscription($filter: LotStatusFilter) {{
  lotStatusChanged(filter: $filter) {{ {EVENT_FIELDS} }} }}"""
TIMEOUT = 10.0  # seconds any single expected message may take

# The QMS simulator's dialects, written out here rather than read from gateway/codes.py, so a wrong mapping in
# the gateway shows up as a wrong canonical value instead of being mirrored by the test.
NUMERIC_PLANTS = frozenset({"P100"})
LOT_STATUS = {
    "numeric": {"IN_INSPECTION": "10", "RELEASED": "20", "REJECTED": "30", "ON_HOLD": "40"},
    "labels": {
        "IN_INSPECTION": "Under inspection",
        "RELEASED": "Released",
        "REJECTED": "Rejected",
        "ON_HOLD": "Blocked",
    },
}
HOLD_STATUS = {"numeric": {"ACTIVE": "1", "RELEASED": "2"}, "labels": {"ACTIVE": "Active", "RELEASED": "Released"}}


def event_settings(**overrides: Any) -> EventSettings:
    """Webhooks for QMS and MES signed with `SECRET`, and no containment (tests here watch the bus, not holds)."""
    values: dict[str, Any] = {
        "webhook_secrets": {"qms": SECRET, "mes": SECRET},
        "containment": ContainmentSettings(enabled=False),
    }
    return EventSettings(**(values | overrides))


def fresh_redis(redis_url: str, db: int) -> str:
    """`redis_url` pointed at database `db`, emptied first: a test's event stream starts empty whatever ran before
    on the session's Redis (each test module uses databases of its own; 0 is the other Redis tests')."""
    url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{db}"))
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1) + "/graphql"


# --- signing and posting webhooks ----------------------------------------------------------------------------------


def sign(secret: str, body: str, *, msg_id: str | None = None, at: datetime | None = None) -> dict[str, str]:
    """Standard Webhooks headers for `body`, as a plant system signs it (`at` defaults to now)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
        "content-type": "application/json",
    }


class Webhooks:
    """Posts signed native events to one gateway's `/webhooks/{source}`."""

    def __init__(self, client: httpx2.AsyncClient, base_url: str, secret: str = SECRET) -> None:
        self.client = client
        self.base_url = base_url
        self.secret = secret

    async def post(
        self, source: str, body: dict[str, Any] | str, *, secret: str | None = None, at: datetime | None = None
    ) -> httpx2.Response:
        text = body if isinstance(body, str) else json.dumps(body)
        headers = sign(secret or self.secret, text, at=at)
        return await self.client.post(f"{self.base_url}/webhooks/{source}", content=text, headers=headers)

    async def publish(self, event: dict[str, Any], source: str = "qms") -> dict[str, Any]:
        """Post an event that must be accepted; the gateway's answer (`id`, `cursor`)."""
        response = await self.post(source, event)
        assert response.status_code == 202, response.text
        return response.json()


# --- native QMS events -----------------------------------------------------------------------------------------------


def _dialect(plant: str) -> str:
    return "numeric" if plant in NUMERIC_PLANTS else "labels"


def native_status(plant: str, status: str) -> str:
    """The QMS code of canonical `status` in `plant`'s dialect."""
    return LOT_STATUS[_dialect(plant)][status]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class QmsEvents:
    """Native QMS events about lots of the dataset, each with a fresh event id."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    @staticmethod
    def new_id() -> str:
        return f"QMS-EVT-{uuid.uuid4().hex[:16].upper()}"

    def lot(self, lot_id: str, status: str) -> dict[str, Any]:
        """The lot as QMS renders it (GET /api/v1/lots), in canonical `status`."""
        lot = self.dataset.lots[lot_id]
        return {"lot_id": lot.id, "plant": lot.plant, "material": lot.material, "supplier": lot.supplier,
                "status": native_status(lot.plant, status), "status_changed_at": _iso(datetime.now(UTC))}  # fmt: skip

    def _envelope(self, kind: str, lot_id: str, data: dict[str, Any], event_id: str | None) -> dict[str, Any]:
        return {"id": event_id or self.new_id(), "type": kind, "source": "qms", "occurred_at": _iso(datetime.now(UTC)),
                "plant": self.dataset.lots[lot_id].plant, "data": data}  # fmt: skip

    def status_changed(
        self, lot_id: str, status: str = "REJECTED", previous: str = "IN_INSPECTION", *, event_id: str | None = None
    ) -> dict[str, Any]:
        plant = self.dataset.lots[lot_id].plant
        data = {"lot": self.lot(lot_id, status), "previous_status": native_status(plant, previous)}
        return self._envelope("lot.status_changed", lot_id, data, event_id)

    def hold_placed(self, lot_id: str, reason: str = "suspected contamination", *, event_id: str | None = None) -> dict:
        lot = self.dataset.lots[lot_id]
        hold = {"id": f"QH-{uuid.uuid4().hex[:10].upper()}", "lot_id": lot.id, "plant": lot.plant,
                "status": HOLD_STATUS[_dialect(lot.plant)]["ACTIVE"], "reason_code": "QH01", "reason": reason,
                "placed_by": "qms-user", "placed_at": _iso(datetime.now(UTC))}  # fmt: skip
        return self._envelope("hold.placed", lot_id, {"hold": hold, "lot": self.lot(lot_id, "ON_HOLD")}, event_id)


def supplied_lots(dataset: Dataset, *, plant: str | None = None, supplier: str | None = None) -> Iterable[Lot]:
    """Purchased lots (they have a supplier), optionally of one plant or supplier, in a stable order."""
    for lot in dataset.lots.values():
        if lot.supplier and (plant is None or lot.plant == plant) and (supplier is None or lot.supplier == supplier):
            yield lot


def in_house_lot(dataset: Dataset, plant: str | None = None) -> Lot:
    return next(lot for lot in dataset.lots.values() if not lot.supplier and (plant is None or lot.plant == plant))


def short_lived_token(settings: Settings, *roles: str, seconds: float, plants: tuple[str, ...] = ("*",)) -> str:
    """A development token for a gateway with `settings` that expires `seconds` from now (negative: expired)."""
    signer = DevSigner.load_or_create(settings.auth.dev_key_path(settings.data_dir))
    return signer.mint(f"test-{'-'.join(roles)}", roles=roles, plants=plants, ttl=timedelta(seconds=seconds),
                       issuer=settings.auth.issuer, audience=settings.auth.audience)  # fmt: skip


def kernel_send_buffer_max() -> int:
    """The most a TCP socket's send buffer grows to here (Linux autotuning), which a slow reader's backlog must
    exceed before the gateway has to wait on it."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 1024 * 1024


# --- metrics ------------------------------------------------------------------------------------------------------


class Scrape:
    """One reading of a gateway's `/metrics` (Prometheus text)."""

    def __init__(self, text: str) -> None:
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    @classmethod
    async def of(cls, client: httpx2.AsyncClient, base_url: str) -> Scrape:
        response = await client.get(f"{base_url}/metrics")
        response.raise_for_status()
        return cls(response.text)

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` (e.g. `lotgraph_events_ingested_total`) whose labels include `labels`."""
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))  # fmt: skip


async def metric(client: httpx2.AsyncClient, base_url: str, name: str, **labels: str) -> float:
    """The current value of a metric (summed over the samples whose labels include `labels`)."""
    return (await Scrape.of(client, base_url)).value(name, **labels)


class Counters:
    """Counter increments since `Counters.now(...)`, so tests can share a gateway."""

    def __init__(self, client: httpx2.AsyncClient, base_url: str, base: Scrape) -> None:
        self.client = client
        self.base_url = base_url
        self.base = base

    @classmethod
    async def now(cls, client: httpx2.AsyncClient, base_url: str) -> Counters:
        return cls(client, base_url, await Scrape.of(client, base_url))

    async def __call__(self, name: str, **labels: str) -> float:
        return (await Scrape.of(self.client, self.base_url)).value(name, **labels) - self.base.value(name, **labels)


async def until_subscriptions(client: httpx2.AsyncClient, base_url: str, count: int, within: float = TIMEOUT) -> None:
    """Wait until the gateway carries exactly `count` live subscriptions (the `lotgraph_subscriptions` gauge,
    raised when a subscription's listener is registered and lowered when it is gone)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (now := await metric(client, base_url, "lotgraph_subscriptions")) != count:
        assert loop.time() < deadline, f"the gateway carries {now} subscriptions, not {count}"
        await asyncio.sleep(0.02)


# --- graphql-transport-ws ------------------------------------------------------------------------------------------


class Closed(Exception):
    """The server closed the socket; `code` and `reason` are what it said."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class WsClient:
    """One graphql-transport-ws connection; messages are kept per subscription id as they arrive."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._by_id: dict[str, deque[dict[str, Any]]] = defaultdict(deque)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        base_url: str,
        token: str | None = None,
        *,
        payload: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        small_buffers: bool = False,
    ) -> AsyncIterator[WsClient]:
        """Connect and send `connection_init` (with `Authorization: Bearer <token>`, or `payload` as given).

        `small_buffers`: a receiver that holds little in its kernel buffer and library queue, so a client
        that stops reading makes the gateway wait on it at once (what a slow consumer looks like).
        """
        # A test that leaves events unread stops the library reading (max_queue), so it would never see the
        # server's close frame queued behind them: give up on the closing handshake after 1 s, not 10.
        options: dict[str, Any] = {"subprotocols": ["graphql-transport-ws"], "proxy": None, "compression": None,
                                   "additional_headers": headers or {}, "close_timeout": 1}  # fmt: skip
        if small_buffers:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            host, port = base_url.removeprefix("http://").split(":")
            sock.connect((host, int(port)))
            options |= {"sock": sock, "max_queue": 1}
        async with connect(ws_url(base_url), **options) as ws:
            client = cls(ws)
            if payload is None:
                payload = {"Authorization": f"Bearer {token}"} if token else {}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            yield client

    async def _receive(self, within: float) -> dict[str, Any]:
        """The next message from the server (pings answered); `Closed` when the server closed the socket."""
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), within)
            except ConnectionClosed as exc:
                close = exc.rcvd
                raise Closed(close and close.code, close.reason if close else "") from None
            message = json.loads(raw)
            if message.get("type") == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            return message

    async def acknowledged(self, within: float = TIMEOUT) -> None:
        message = await self._receive(within)
        assert message["type"] == "connection_ack", message

    async def subscribe(self, sub_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        message = {"id": sub_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}}
        await self.ws.send(json.dumps(message))

    async def stop(self, sub_id: str) -> None:
        await self.ws.send(json.dumps({"id": sub_id, "type": "complete"}))

    async def message(self, sub_id: str, within: float = TIMEOUT) -> dict[str, Any]:
        """The next `next`, `error` or `complete` message of subscription `sub_id`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self._by_id[sub_id]:
            message = await self._receive(max(0.0, deadline - loop.time()))
            self._by_id[message.get("id", "")].append(message)
        return self._by_id[sub_id].popleft()

    def unread(self, sub_id: str) -> list[dict[str, Any]]:
        """Messages of subscription `sub_id` received and not yet read."""
        return list(self._by_id[sub_id])

    async def event(self, sub_id: str, within: float = TIMEOUT) -> dict[str, Any]:
        """The next event of a subscription (the one field of `data`), insisting on a clean `next`."""
        message = await self.message(sub_id, within)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        (value,) = message["payload"]["data"].values()
        return value

    async def events_until(
        self, sub_id: str, last: Callable[[dict[str, Any]], bool], within: float = TIMEOUT
    ) -> list[dict[str, Any]]:
        """Events of a subscription up to and including the first one `last` accepts."""
        received = []
        while True:
            received.append(await self.event(sub_id, within))
            if last(received[-1]):
                return received

    async def closed(self, within: float = TIMEOUT) -> Closed:
        """Read until the server closes the socket; what it closed with."""
        try:
            while True:
                await self._receive(within)
        except Closed as closed:
            return closed


def error_codes(message: dict[str, Any]) -> list[str]:
    """The `extensions.code` of every error a `next` or `error` message carries."""
    payload = message.get("payload")
    errors = payload if isinstance(payload, list) else (payload or {}).get("errors", [])
    return [error.get("extensions", {}).get("code") for error in errors]


# --- GraphQL over SSE --------------------------------------------------------------------------------------------


class SseStream:
    """A subscription over Server-Sent Events: `response` is the HTTP answer, `next` the next SSE event."""

    def __init__(self, response: httpx2.Response, events: AsyncIterator[httpx2.ServerSentEvent] | None) -> None:
        self.response = response
        self._events = events

    async def next(self, within: float = TIMEOUT) -> tuple[str, Any]:
        """(`next`, GraphQL response) or (`complete`, None)."""
        assert self._events is not None, f"not a stream: {self.response.status_code}"
        sse = await asyncio.wait_for(anext(self._events), within)
        return sse.event, (json.loads(sse.data) if sse.data else None)

    async def event(self, within: float = TIMEOUT) -> dict[str, Any]:
        kind, result = await self.next(within)
        assert kind == "next" and "errors" not in result, (kind, result)
        (value,) = result["data"].values()
        return value

    async def events_until(self, last: Callable[[dict[str, Any]], bool], within: float = TIMEOUT) -> list[dict]:
        received = []
        while True:
            received.append(await self.event(within))
            if last(received[-1]):
                return received


@asynccontextmanager
async def sse_subscribe(
    client: httpx2.AsyncClient, base_url: str, query: str, variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> AsyncIterator[SseStream]:  # fmt: skip
    """POST the subscription with `Accept: text/event-stream`; the stream (or the refusal, not streamed)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"query": query, "variables": variables or {}}
    async with client.sse(f"{base_url}/graphql", method="POST", json=body, headers=headers) as source:
        response = source.response
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aread()
            yield SseStream(response, None)
            return
        events = aiter(source)
        try:
            yield SseStream(response, events)
        finally:
            with suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]
