"""Event benchmarks: QMS state change -> subscriber latency with 1,000 subscribers connected, events per second
one gateway process ingests from signed webhooks (with one subscriber: the ingest itself, issue 15's target of
500 events/s; with 100: its fan-out too), each checked in the inbox and delivered, and gateway memory with 1,000
idle subscriptions.

Subscribers are graphql-transport-ws clients in this process (one event loop), so the latency figures include
this client's own work of receiving 1,000 copies of each event; the gateway's share is smaller, not larger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx2
from standardwebhooks.webhooks import Webhook

from bench.stack import WEBHOOK_SECRET, Stack
from simulators import Dataset

SUBSCRIBE = "subscription($types: [EventType!]) { qualityEvents(filter: {types: $types}) { id lotId } }"


class Subscriber:
    """One graphql-transport-ws connection with one subscription; `on_event(lot_id, id)` per event. aiohttp's
    client, not `websockets`: its frame reader is compiled, and with 100 subscribers the bench's own receiving
    (about 10 us a message with `websockets`) took CPU the gateway's fan-out needed on a 2-core machine."""

    def __init__(self, url: str, on_event: Callable[[str, str], None]) -> None:
        self.url = url.replace("http", "ws", 1) + "/graphql"
        self.on_event = on_event
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self, session: aiohttp.ClientSession, types: list[str]) -> None:
        async with session.ws_connect(self.url, protocols=["graphql-transport-ws"], compress=0) as ws:
            await ws.send_str(json.dumps({"type": "connection_init", "payload": {}}))
            await ws.receive()
            payload = {"query": SUBSCRIBE, "variables": {"types": types}}
            await ws.send_str(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            self.ready.set()
            async for frame in ws:
                message = json.loads(frame.data)
                if message.get("type") == "next":
                    event = message["payload"]["data"]["qualityEvents"]
                    self.on_event(event["lotId"], event["id"])


class Subscribers(list[Subscriber]):
    """Connected subscribers, sharing one aiohttp session."""

    session: aiohttp.ClientSession


async def _connect(url: str, count: int, types: list[str], on_event: Callable[[str, str], None]) -> Subscribers:
    subscribers = Subscribers(Subscriber(url, on_event) for _ in range(count))
    subscribers.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    for batch in range(0, count, 100):  # connect in waves: a thousand handshakes at once would time out
        for s in subscribers[batch : batch + 100]:
            s.task = asyncio.create_task(s.run(subscribers.session, types))
        await asyncio.gather(*(s.ready.wait() for s in subscribers[batch : batch + 100]))
    await asyncio.sleep(0.5)  # the last subscriptions reach the fan-out
    return subscribers


async def _close(subscribers: Subscribers) -> None:
    for s in subscribers:
        if s.task is not None:
            s.task.cancel()
    await asyncio.gather(*(s.task for s in subscribers if s.task is not None), return_exceptions=True)
    await subscribers.session.close()


def _undecided(dataset: Dataset, count: int) -> list[Any]:
    return [i for i in dataset.inspection_lots.values() if i.usage_decision is None][:count]


def _passing(inspection: Any) -> dict[str, Any]:
    results = [{"code": c.code, "result": (c.lower_limit + c.upper_limit) / 2} for c in inspection.characteristics]
    return {"results": results, "decided_by": "bench"}


async def _all_arrived(arrived: asyncio.Event, seconds: float) -> None:
    """Wait for every delivery, or report what arrived by the deadline."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(arrived.wait(), seconds)


async def _latency(stack: Stack, dataset: Dataset, subscribers: int, events: int) -> list[str]:
    inspections = _undecided(dataset, events)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    arrived = asyncio.Event()

    def received(lot_id: str, _event_id: str) -> None:
        if lot_id in sent:
            latencies.append(time.perf_counter() - sent[lot_id])
            if len(latencies) == subscribers * len(inspections):
                arrived.set()

    async with httpx2.AsyncClient(timeout=30) as client:
        await stack.settled(client)  # not behind the hold events of the recalls benched before
    connected = await _connect(stack.gateway, subscribers, ["INSPECTION_COMPLETED"], received)
    qms = stack.sim("qms")
    cpu = stack.gateway_cpu_seconds()
    async with httpx2.AsyncClient(timeout=30) as client:
        for inspection in inspections:
            sent[inspection.lot] = time.perf_counter()
            response = await client.post(
                f"{qms}/api/v1/inspection-lots/{inspection.id}/results", json=_passing(inspection)
            )
            response.raise_for_status()
            await asyncio.sleep(0.2)
        await _all_arrived(arrived, 30)
    cpu = stack.gateway_cpu_seconds() - cpu
    await _close(connected)
    ms = sorted(1000 * x for x in latencies) or [float("nan")]
    p50, p95 = ms[len(ms) // 2], ms[int(len(ms) * 0.95)]
    return [
        f"event latency, QMS inspection result -> subscriber, {subscribers} subscribers, {len(sent)} events:",
        f"  deliveries {len(latencies)} of {subscribers * len(sent)}, p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"max {ms[-1]:.0f} ms",
        f"  gateway CPU {1000 * cpu / len(sent):.0f} ms per event (its fan-out to {subscribers} and its workflow)",
    ]


def _signed(source_id: str, lot: Any) -> tuple[str, dict[str, str]]:
    now = datetime.now(UTC)
    status = "20" if lot.plant == "P100" else "Released"
    record = {"lot_id": lot.id, "plant": lot.plant, "material": lot.material, "supplier": lot.supplier,
              "status": status, "status_changed_at": now.isoformat()}  # fmt: skip
    body = json.dumps({"id": source_id, "type": "lot.status_changed", "source": "qms", "occurred_at": now.isoformat(),
                       "plant": lot.plant, "data": {"lot": record, "previous_status": status}})  # fmt: skip
    headers = {"webhook-id": source_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(WEBHOOK_SECRET).sign(source_id, now, body)}  # fmt: skip
    return body, headers


SENDERS = 32


async def _send(url: str, bodies: list[tuple[str, dict[str, str]]]) -> dict[int, int]:
    """POST every signed body from `SENDERS` concurrent connections; how many answers of each status. aiohttp, not
    httpx2: httpx's client, which httpx2 continues, spent ~3.4 ms of CPU per request here, so the bench measured
    itself, not the gateway."""
    statuses: dict[int, int] = {}
    queue = iter(bodies)

    async def sender(session: aiohttp.ClientSession) -> None:
        for body, headers in queue:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=SENDERS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(sender(session) for _ in range(SENDERS)))
    return statuses


def _in_inbox(stack: Stack, prefix: str) -> int:
    """Events of this run in the gateway's store (its SQLite file, read beside it: WAL lets a reader in)."""
    with contextlib.closing(sqlite3.connect(f"file:{stack.data_dir / 'lotgraph.db'}?mode=ro", uri=True)) as db:
        return db.execute("SELECT count(*) FROM inbox WHERE id LIKE ?", (f"qms:{prefix}%",)).fetchone()[0]


async def _throughput(stack: Stack, dataset: Dataset, subscribers: int, events: int) -> list[str]:
    run = f"bench-{uuid.uuid4().hex[:8]}-"
    delivered = 0
    arrived = asyncio.Event()

    def received(_lot: str, event_id: str) -> None:
        nonlocal delivered
        if event_id.startswith(f"qms:{run}"):  # not the plant's own events meanwhile
            delivered += 1
            if delivered == subscribers * events:
                arrived.set()

    async with httpx2.AsyncClient(timeout=30) as client:
        await stack.idle(client)  # not behind the previous run's reactions and subscribers
    connected = await _connect(stack.gateway, subscribers, ["LOT_STATUS_CHANGED"], received)
    lots = list(dataset.lots.values())
    bodies = [_signed(f"{run}{uuid.uuid4().hex}", lots[i % len(lots)]) for i in range(events)]
    started, cpu = time.perf_counter(), stack.gateway_cpu_seconds()
    statuses = await _send(f"{stack.gateway}/webhooks/qms", bodies)
    ingested = time.perf_counter() - started
    await _all_arrived(arrived, 60)
    total, cpu = time.perf_counter() - started, stack.gateway_cpu_seconds() - cpu
    await _close(connected)
    answers = ", ".join(f"{count} answered {status}" for status, count in sorted(statuses.items()))
    return [
        f"throughput, signed webhooks from {SENDERS} senders -> inbox -> bus -> {subscribers} subscriber(s), "
        f"{events} events:",
        f"  ingest {events / ingested:.0f} events/s (target >= 500); gateway CPU {1000 * cpu / events:.2f} ms per "
        f"event (ingest, reactions, fan-out to {subscribers})",
        f"  nothing lost: {answers}; {_in_inbox(stack, run)} in the inbox; delivered {delivered} of "
        f"{subscribers * events} in {total:.1f} s = {events / total:.0f} events/s "
        f"({delivered / total:.0f} deliveries/s)",
    ]


async def _memory(stack: Stack, subscribers: int) -> list[str]:
    before = stack.gateway_rss_mib()
    connected = await _connect(stack.gateway, subscribers, ["HOLD_PLACED"], lambda *_: None)
    await asyncio.sleep(1)
    after = stack.gateway_rss_mib()
    await _close(connected)
    return [
        f"gateway memory with {subscribers} idle subscriptions: {before:.0f} MiB -> {after:.0f} MiB "
        f"({(after - before) * 1024 / subscribers:.0f} KiB per subscription)",
    ]


def subscriptions(stack: Stack, dataset: Dataset) -> list[str]:
    async def run() -> list[str]:
        return [
            *await _memory(stack, 1000),
            *await _latency(stack, dataset, 1000, 20),
            *await _throughput(stack, dataset, 1, 2000),  # the ingest itself
            *await _throughput(stack, dataset, 100, 2000),  # with the fan-out to 100 subscribers
        ]

    return asyncio.run(run())
