"""Subscriptions over graphql-transport-ws and SSE: normalized events, authentication, per-event authorization,
filters, resuming without gap or duplicate, cutting off a slow subscriber, token expiry, operation progress."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway.auth import AuthSettings, DevSigner
from gateway.events.bus import position
from gateway.settings import Mode
from simulators import Dataset
from tests.conftest import Gateway, Plant, production_auth, start_gateway
from tests.events import (
    LOT_STATUS_CHANGED,
    QUALITY_EVENTS,
    Counters,
    QmsEvents,
    Webhooks,
    WsClient,
    error_codes,
    event_settings,
    fresh_redis,
    in_house_lot,
    kernel_send_buffer_max,
    short_lived_token,
    sse_subscribe,
    supplied_lots,
    until_subscriptions,
)

QUEUE = 20  # events a subscriber may fall behind before it is cut off
REDIS_DB = 12  # a Redis database of this module's own, emptied before each use


@pytest.fixture(scope="module")
def gateway(plant: Plant) -> Iterator[Gateway]:
    """One gateway for the module; each test waits for the previous tests' subscriptions to be gone."""
    with start_gateway(plant, events=event_settings(subscriber_queue=QUEUE, erp_poll_seconds=0)) as gw:
        yield gw


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as http:
        await until_subscriptions(http, gateway.url, 0)
        yield http


@pytest.fixture
def qms(dataset: Dataset) -> QmsEvents:
    return QmsEvents(dataset)


@pytest.fixture
def hooks(client: httpx2.AsyncClient, gateway: Gateway) -> Webhooks:
    return Webhooks(client, gateway.url)


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [event["id"] for event in events]


def answered(answer: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """For `events_until`: is this the event the webhook's `answer` (id, cursor) was about?"""
    return lambda event: event["id"] == answer["id"]


async def test_websocket_and_sse_deliver_the_same_normalized_event(
    gateway: Gateway, client: httpx2.AsyncClient, hooks: Webhooks, qms: QmsEvents, dataset: Dataset
) -> None:
    """A P100 "30" and a P200 "Blocked" arrive as canonical REJECTED and ON_HOLD, a QMS hold as HOLD_PLACED, with
    lot, material, supplier, cursor and times, identically over WebSocket and SSE."""
    p100, p200, p300 = (next(iter(supplied_lots(dataset, plant=p))) for p in ("P100", "P200", "P300"))
    sent = [
        qms.status_changed(p100.id, "REJECTED", "IN_INSPECTION"),
        qms.status_changed(p200.id, "ON_HOLD", "RELEASED"),
        qms.hold_placed(p300.id, reason="foreign particles"),
    ]
    token = gateway.token("quality_engineer")
    async with (
        WsClient.connect(gateway.url, token) as ws,
        sse_subscribe(client, gateway.url, QUALITY_EVENTS, token=token) as sse,
    ):
        await ws.acknowledged()
        await ws.subscribe("q", QUALITY_EVENTS)
        await until_subscriptions(client, gateway.url, 2)
        answers = [await hooks.publish(event) for event in sent]
        over_ws = await ws.events_until("q", answered(answers[-1]))
        over_sse = await sse.events_until(answered(answers[-1]))
    assert over_ws == over_sse
    assert [(e["id"], e["cursor"]) for e in over_ws] == [(a["id"], a["cursor"]) for a in answers]
    rejected, held, hold = over_ws
    assert rejected["type"] == "LOT_STATUS_CHANGED" and rejected["source"] == "qms"
    assert (rejected["plant"], rejected["lotId"], rejected["material"], rejected["supplier"]) == (
        "P100", p100.id, p100.material, p100.supplier)  # fmt: skip
    assert rejected["payload"]["qualityStatus"] == "REJECTED"
    assert rejected["payload"]["previousQualityStatus"] == "IN_INSPECTION"
    assert datetime.fromisoformat(rejected["occurredAt"]) == datetime.fromisoformat(sent[0]["occurred_at"])
    assert datetime.fromisoformat(rejected["ingestedAt"]) >= datetime.fromisoformat(rejected["occurredAt"])
    assert rejected["schemaVersion"] == 2 and rejected["correlationId"]
    assert (held["plant"], held["lotId"], held["supplier"]) == ("P200", p200.id, p200.supplier)
    assert held["payload"]["qualityStatus"] == "ON_HOLD" and held["payload"]["previousQualityStatus"] == "RELEASED"
    assert hold["type"] == "HOLD_PLACED" and hold["lotId"] == p300.id and hold["plant"] == "P300"
    assert hold["payload"]["status"] == "ACTIVE" and hold["payload"]["reason"] == "foreign particles"


async def test_subscribers_of_one_event_each_get_their_own_selection(
    gateway: Gateway, client: httpx2.AsyncClient, hooks: Webhooks, qms: QmsEvents, dataset: Dataset
) -> None:
    """One event reaches selections that differ in fields, aliases and operation, and two subscribers of the same
    selection: each gets exactly what it asked for (renderings are shared per selection, never across)."""
    lot = next(iter(supplied_lots(dataset, plant="P200")))
    narrow = "subscription { qualityEvents { id lotId } }"
    aliased = "subscription { qualityEvents { id where: plant who: supplier __typename } }"
    status = "subscription { lotStatusChanged { id type payload } }"
    token = gateway.token("quality_engineer")
    async with WsClient.connect(gateway.url, token) as one, WsClient.connect(gateway.url, token) as two:
        for ws in (one, two):
            await ws.acknowledged()
        for sub_id, query in (("narrow", narrow), ("aliased", aliased), ("status", status)):
            await one.subscribe(sub_id, query)
        await two.subscribe("narrow", narrow)
        await until_subscriptions(client, gateway.url, 4)
        answer = await hooks.publish(qms.status_changed(lot.id, "ON_HOLD", "RELEASED"))
        got = {name: (await one.events_until(name, answered(answer)))[-1] for name in ("narrow", "aliased", "status")}
        again = (await two.events_until("narrow", answered(answer)))[-1]
    assert got["narrow"] == again == {"id": answer["id"], "lotId": lot.id}
    assert got["aliased"] == {"id": answer["id"], "where": "P200", "who": lot.supplier, "__typename": "QualityEvent"}
    assert set(got["status"]) == {"id", "type", "payload"} and got["status"]["type"] == "LOT_STATUS_CHANGED"
    assert got["status"]["payload"]["qualityStatus"] == "ON_HOLD"


async def test_operations_of_one_selection_each_get_every_event_once_under_their_own_id(
    gateway: Gateway, client: httpx2.AsyncClient, hooks: Webhooks, qms: QmsEvents, dataset: Dataset
) -> None:
    """Past its first subscriber, an event's rendering is sent by each operation's own task (`next_frames` in
    `schema/renderings.py`): two operations of one selection on one connection and a third on another each get
    every event once, in order, under their own id; an operation the client stopped gets nothing more."""
    lots = list(supplied_lots(dataset, plant="P200"))[:3]
    query = "subscription { qualityEvents(filter: {types: [LOT_STATUS_CHANGED]}) { id lotId } }"
    token = gateway.token("quality_engineer")
    async with WsClient.connect(gateway.url, token) as one, WsClient.connect(gateway.url, token) as two:
        for ws in (one, two):
            await ws.acknowledged()
        await one.subscribe("a", query)
        await one.subscribe("b", query)
        await two.subscribe("c", query)
        await until_subscriptions(client, gateway.url, 3)
        answers = [await hooks.publish(qms.status_changed(lot.id, "ON_HOLD", "RELEASED")) for lot in lots[:2]]
        ours = {answer["id"]: lot.id for answer, lot in zip(answers, lots, strict=False)}
        for ws, operation in ((one, "a"), (one, "b"), (two, "c")):
            got = await ws.events_until(operation, answered(answers[-1]))
            assert [(e["id"], e["lotId"]) for e in got if e["id"] in ours] == list(ours.items()), operation
        await one.stop("a")
        await until_subscriptions(client, gateway.url, 2)
        last = await hooks.publish(qms.status_changed(lots[2].id, "ON_HOLD", "RELEASED"))
        for ws, operation in ((one, "b"), (two, "c")):
            assert (await ws.events_until(operation, answered(last)))[-1] == {"id": last["id"], "lotId": lots[2].id}
        assert one.unread("a") == []  # sent before "b"'s on the same connection, had there been any


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"Authorization": "Bearer not-a-jwt"}, "well-formed"),
        ({"token": "not-a-jwt"}, "well-formed"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "bearer"),
        (None, "expired"),  # a real token of this gateway, expired a minute ago (beyond the 30 s leeway)
    ],
    ids=["bearer", "token-param", "basic", "expired"],
)
async def test_a_bad_token_closes_the_websocket_4403_saying_why(
    gateway: Gateway, client: httpx2.AsyncClient, payload: dict[str, str] | None, reason: str
) -> None:
    """A token that is malformed, of the wrong scheme or expired, in any of the places a client may put it, is
    refused before anything is subscribed: close 4403 with a reason starting "unauthenticated"."""
    if payload is None:
        payload = {"Authorization": f"Bearer {short_lived_token(gateway.settings, 'quality_engineer', seconds=-60)}"}
    async with WsClient.connect(gateway.url, payload=payload) as ws:
        await ws.subscribe("q", QUALITY_EVENTS)
        closed = await ws.closed()
    assert closed.code == 4403
    assert closed.reason.startswith("unauthenticated") and reason in closed.reason.lower(), closed.reason


async def test_a_bad_token_over_sse_is_401_before_streaming(gateway: Gateway, client: httpx2.AsyncClient) -> None:
    """SSE authenticates like any request: a bad token is a JSON 401 UNAUTHENTICATED, never an event stream."""
    async with sse_subscribe(client, gateway.url, QUALITY_EVENTS, token="not-a-jwt") as sse:
        assert sse.response.status_code == 401
        assert sse.response.headers["content-type"].startswith("application/json")
        assert sse.response.headers["www-authenticate"].startswith("Bearer")
        assert sse.response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    async with sse_subscribe(client, gateway.url, QUALITY_EVENTS, token=gateway.token("quality_engineer")) as sse:
        assert sse.response.status_code == 200, "the same request with a good token streams"


@pytest.mark.parametrize("transport", ["POST application/json", "GET", "POST multipart/mixed"])
@pytest.mark.parametrize("mode", [Mode.DEVELOPMENT, Mode.PRODUCTION])
def test_a_subscription_over_plain_http_is_refused_naming_the_transports_that_carry_it(
    plant: Plant, gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture, transport: str, mode: Mode
) -> None:
    """A subscription is a stream: sent as a plain POST, a GET or with Apollo's multipart Accept (not supported yet),
    it is refused 400 SUBSCRIPTION_NEEDS_STREAM before anything runs, the message naming graphql-transport-ws and
    SSE, and nothing is logged as a bug. The same document over SSE streams (test_websocket_and_sse_...)."""
    query = "subscription { qualityEvents { id } }"
    accept = 'multipart/mixed;subscriptionSpec="1.0", application/json' if "multipart" in transport else None
    with (
        start_gateway(plant, mode=mode, auth=production_auth(tmp_path))
        if mode is Mode.PRODUCTION
        else nullcontext(gateway) as target
    ):
        headers = {
            "Authorization": f"Bearer {target.token('quality_engineer')}",
            **({"Accept": accept} if accept else {}),
        }
        with caplog.at_level(logging.INFO):
            if transport == "GET":
                response = httpx2.get(f"{target.url}/graphql", params={"query": query}, headers=headers, timeout=30)
            else:
                response = httpx2.post(f"{target.url}/graphql", json={"query": query}, headers=headers, timeout=30)
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "SUBSCRIPTION_NEEDS_STREAM", error
    assert "graphql-transport-ws" in error["message"] and "text/event-stream" in error["message"], error["message"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], "logged as a bug"


async def test_production_masks_websocket_errors_like_http(plant: Plant, dataset: Dataset, tmp_path: Path) -> None:
    """With QMS down, a query over graphql-transport-ws answers what the same query over HTTP does: the code, the
    source and a message with only the system's name and the correlation id (no upstream path or status). Both
    pass `schema.Schema.process_errors`, as a subscription's results do."""
    lot = next(iter(supplied_lots(dataset)))
    query = "query($id: ID!) { lot(id: $id) { id qualityStatus } }"
    with start_gateway(plant, mode=Mode.PRODUCTION, auth=production_auth(tmp_path)) as prod:
        token = prod.token("qa_manager")
        plant.fault("qms", down=True)
        over_http = prod.execute(query, {"id": lot.id}, token=token)["errors"]
        async with WsClient.connect(prod.url, token) as ws:
            await ws.acknowledged()
            await ws.subscribe("q", query, {"id": lot.id})
            over_ws = (await ws.message("q"))["payload"]["errors"]
    for errors in (over_http, over_ws):
        (error,) = errors
        assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE", "source": "qms"}, error
        assert re.fullmatch(r"QMS could not give a usable answer \(UPSTREAM_UNAVAILABLE\); correlation id \w+\.",
                            error["message"]), error["message"]  # fmt: skip
    assert over_ws[0]["path"] == over_http[0]["path"]


async def test_production_masks_a_subscriptions_upstream_failure(
    plant: Plant, dataset: Dataset, tmp_path: Path
) -> None:
    """A subscription whose access check cannot reach the ERP (another QA manager follows a pending hold while the
    ERP is down) ends with the masked error, as a query's would: code, source, system and correlation id only."""
    lot = list(supplied_lots(dataset))[-7]
    hold = """mutation($lot: ID!) { placeQualityHold(input: {lotId: $lot, reasonCode: "QH01", reason: "mask test",
              idempotencyKey: "mask-test"}) { id state } }"""
    with start_gateway(plant, mode=Mode.PRODUCTION, auth=production_auth(tmp_path)) as prod:
        plant.fault("wms", down=True, paths=["/v2/stock-moves"])  # the hold stays pending, its lot's reads uncached
        op = prod.data(hold, {"lot": lot.id}, token=prod.token("qa_manager", sub="qa-placer"))["placeQualityHold"]
        assert op["state"] == "PENDING"
        plant.fault("erp", down=True)
        async with WsClient.connect(prod.url, prod.token("qa_manager", sub="qa-follower")) as ws:
            await ws.acknowledged()
            await ws.subscribe("o", "subscription($id: ID!) { operationUpdated(id: $id) { state } }", {"id": op["id"]})
            (error,) = (await ws.message("o"))["payload"]["errors"]
        plant.clear_faults()
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE", "source": "erp"}, error
    assert re.fullmatch(r"ERP could not give a usable answer \(UPSTREAM_UNAVAILABLE\); correlation id \w+\.",
                        error["message"]), error["message"]  # fmt: skip


async def test_production_refuses_subscribers_without_a_token(
    plant: Plant, dataset: Dataset, qms: QmsEvents, tmp_path: Path
) -> None:
    """In production there is no anonymous subscriber: no token closes the WebSocket 4403 and answers SSE 401;
    a token from the identity provider, in `connection_init` or on the upgrade request, subscribes."""
    signer = DevSigner.load_or_create(tmp_path / "idp-private.pem")
    (key := tmp_path / "idp.json").write_text(json.dumps(signer.jwks()))
    auth = AuthSettings(key_file=key)
    settings = event_settings(erp_poll_seconds=0)
    token = signer.mint("someone", roles=("quality_engineer",), plants=("*",), issuer=auth.issuer,
                        audience=auth.audience)  # fmt: skip
    lot = next(iter(supplied_lots(dataset, plant="P100")))
    with start_gateway(plant, mode=Mode.PRODUCTION, auth=auth, events=settings) as prod:
        async with httpx2.AsyncClient(timeout=30) as client:
            async with WsClient.connect(prod.url) as anonymous:
                await anonymous.subscribe("q", QUALITY_EVENTS)
                closed = await anonymous.closed()
            async with sse_subscribe(client, prod.url, QUALITY_EVENTS) as sse:
                refused = sse.response.status_code
            async with (
                WsClient.connect(prod.url, payload={"token": token}) as by_param,
                WsClient.connect(prod.url, payload={}, headers={"Authorization": f"Bearer {token}"}) as by_header,
            ):
                for ws in (by_param, by_header):
                    await ws.acknowledged()
                    await ws.subscribe("q", QUALITY_EVENTS)
                await until_subscriptions(client, prod.url, 2)
                answer = await Webhooks(client, prod.url).publish(qms.status_changed(lot.id))
                received = [(await ws.event("q"))["id"] for ws in (by_param, by_header)]
            await until_subscriptions(client, prod.url, 0)  # gone before the gateway stops
    assert closed.code == 4403 and closed.reason.startswith("unauthenticated"), closed
    assert refused == 401
    assert received == [answer["id"]] * 2


async def test_each_subscriber_sees_only_the_lots_it_may_read(
    gateway: Gateway, client: httpx2.AsyncClient, hooks: Webhooks, qms: QmsEvents, dataset: Dataset
) -> None:
    """Two suppliers each receive only events of lots they supplied, a P100 quality engineer only P100's, and a
    quality engineer of every plant all of them, in-house lots included (each is read up to a last event meant
    for it, so nothing foreign can hide behind it)."""
    elsewhere = [lot for lot in supplied_lots(dataset) if lot.plant != "P100"]
    first, second = (s for s, _ in Counter(lot.supplier for lot in elsewhere).most_common(2))
    mine = {s: [lot.id for lot in elsewhere if lot.supplier == s] for s in (first, second)}
    p100 = next(iter(supplied_lots(dataset, plant="P100"))).id
    assert dataset.lots[p100].supplier not in (first, second)
    lots = [mine[first][0], mine[second][0], in_house_lot(dataset, "P300").id, p100, mine[first][1],
            mine[second][1], mine[first][2], p100]  # fmt: skip
    last = {"first": mine[first][3], "second": mine[second][3], "p100": p100}
    supplier = {s: gateway.token("supplier", supplier=s, plants=()) for s in (first, second)}
    async with (
        WsClient.connect(gateway.url, supplier[first]) as first_ws,
        sse_subscribe(client, gateway.url, QUALITY_EVENTS, token=supplier[second]) as second_sse,
        WsClient.connect(gateway.url, gateway.token("quality_engineer", plants=("P100",))) as p100_ws,
        WsClient.connect(gateway.url, gateway.token("quality_engineer")) as everything_ws,
    ):
        for ws in (first_ws, p100_ws, everything_ws):
            await ws.acknowledged()
            await ws.subscribe("q", QUALITY_EVENTS)
        await until_subscriptions(client, gateway.url, 4)
        published = [await hooks.publish(qms.status_changed(lot)) for lot in lots]
        ends = {name: await hooks.publish(qms.status_changed(lot)) for name, lot in last.items()}
        seen = {
            "first": await first_ws.events_until("q", answered(ends["first"])),
            "second": await second_sse.events_until(answered(ends["second"])),
            "p100": await p100_ws.events_until("q", answered(ends["p100"])),
            "all": await everything_ws.events_until("q", answered(ends["p100"])),
        }
    lot_of = {answer["id"]: lot for answer, lot in zip(published, lots, strict=True)}

    def about(wanted: list[str]) -> list[str]:
        return [answer["id"] for answer in published if lot_of[answer["id"]] in wanted]

    assert {name: ids(events) for name, events in seen.items()} == {
        "first": [*about(mine[first]), ends["first"]["id"]],
        "second": [*about(mine[second]), ends["second"]["id"]],
        "p100": [*about([p100]), ends["p100"]["id"]],
        "all": ids([*published, *ends.values()]),
    }
    assert len(seen["first"]) == 4 and len(seen["second"]) == 3 and len(seen["p100"]) == 3
    assert {e["supplier"] for e in seen["first"]} == {first} and {e["supplier"] for e in seen["second"]} == {second}


async def test_lot_status_changed_filters_by_lot(
    gateway: Gateway, client: httpx2.AsyncClient, hooks: Webhooks, qms: QmsEvents, dataset: Dataset
) -> None:
    """`lotStatusChanged(filter: {lotId})` passes status changes of that lot only: neither another lot's status
    nor a hold on the same lot arrives before the lot's own status change."""
    lot, other = (lot.id for lot, _ in zip(supplied_lots(dataset, plant="P200"), range(2), strict=False))
    async with WsClient.connect(gateway.url, gateway.token("quality_engineer")) as ws:
        await ws.acknowledged()
        await ws.subscribe("lot", LOT_STATUS_CHANGED, {"filter": {"lotId": lot}})
        await until_subscriptions(client, gateway.url, 1)
        await hooks.publish(qms.status_changed(other, "REJECTED"))
        await hooks.publish(qms.hold_placed(lot))
        mine = await hooks.publish(qms.status_changed(lot, "RELEASED"))
        event = await ws.event("lot")
    assert (event["id"], event["lotId"], event["type"]) == (mine["id"], lot, "LOT_STATUS_CHANGED")
    assert event["payload"]["qualityStatus"] == "RELEASED"


@pytest.fixture(params=[("memory", 100), ("redis", 520)], ids=["memory", "redis"])
def any_bus(request: pytest.FixtureRequest, plant: Plant) -> Iterator[tuple[Gateway, int]]:
    """A gateway of the test's own with the in-memory bus, or with Redis Streams on the session's Redis, and how
    many events to publish while a subscriber is away (on Redis, more than one 500-entry page of replay)."""
    kind, missed = request.param
    redis_url = fresh_redis(request.getfixturevalue("redis_server"), REDIS_DB) if kind == "redis" else None
    with start_gateway(plant, redis_url=redis_url, events=event_settings(erp_poll_seconds=0)) as gw:
        yield gw, missed


def in_bus_order(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(answers, key=lambda answer: position(answer["cursor"]))


async def test_resuming_after_a_cursor_loses_and_repeats_nothing(
    any_bus: tuple[Gateway, int], client: httpx2.AsyncClient, qms: QmsEvents, dataset: Dataset
) -> None:
    """A subscriber receives 5 events and goes away; more are published while it is gone; it resubscribes with
    `after` = the last cursor it got while 30 more are being published: it receives exactly every event after
    its cursor, in bus order, once each, then live ones."""
    gateway, missed = any_bus
    hooks = Webhooks(client, gateway.url)
    lots = [lot.id for lot in supplied_lots(dataset)]
    count = 5 + missed + 30
    events = [qms.status_changed(lots[i % len(lots)], "RELEASED" if i % 2 else "REJECTED") for i in range(count)]
    token = gateway.token("quality_engineer")
    async with WsClient.connect(gateway.url, token) as ws:
        await ws.acknowledged()
        await ws.subscribe("q", QUALITY_EVENTS)
        await until_subscriptions(client, gateway.url, 1)
        before = [await hooks.publish(event) for event in events[:5]]
        first = [await ws.event("q") for _ in before]
    assert ids(first) == ids(before)
    await until_subscriptions(client, gateway.url, 0)
    gate = asyncio.Semaphore(32)

    async def publish(event: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await hooks.publish(event)

    gone = await asyncio.gather(*(publish(event) for event in events[5 : 5 + missed]))
    started = asyncio.Event()
    concurrent: list[dict[str, Any]] = []

    async def keep_publishing(lane: list[dict[str, Any]]) -> None:
        for event in lane:
            concurrent.append(await hooks.publish(event))
            if len(concurrent) == 4:
                started.set()

    lanes = events[5 + missed :]
    publishers = asyncio.gather(keep_publishing(lanes[::2]), keep_publishing(lanes[1::2]))
    async with WsClient.connect(gateway.url, token) as ws:
        await ws.acknowledged()
        await started.wait()
        await ws.subscribe("q", QUALITY_EVENTS, {"after": first[-1]["cursor"]})
        published_at_resume = len(concurrent)
        resumed = [await ws.event("q", within=30) for _ in range(len(events) - 5)]
        await publishers
        live = await hooks.publish(qms.status_changed(lots[0]))
        after = await ws.event("q")
    await until_subscriptions(client, gateway.url, 0)  # gone before the gateway stops
    expected = in_bus_order([*gone, *concurrent])
    assert published_at_resume < 30, "the resubscription happened while events were still being published"
    assert ids(resumed) == ids(expected), "every event after the cursor, once, in order"
    assert [e["cursor"] for e in resumed] == [a["cursor"] for a in expected]
    assert after["id"] == live["id"], "then live events, none repeated"


@pytest.mark.parametrize("bus", ["memory", "redis"])
async def test_a_cursor_past_retention_is_refused_not_silently_skipped(
    bus: str, plant: Plant, client: httpx2.AsyncClient, qms: QmsEvents, dataset: Dataset, request: pytest.FixtureRequest
) -> None:
    """With `retention` 100, resuming after the first of 250 events (most of them trimmed since) ends with
    CURSOR_EXPIRED naming `after`, so the client knows it lost events; a cursor still retained resumes."""
    redis_url = fresh_redis(request.getfixturevalue("redis_server"), REDIS_DB) if bus == "redis" else None
    settings = event_settings(retention=100, erp_poll_seconds=0)
    lots = [lot.id for lot, _ in zip(supplied_lots(dataset), range(250), strict=False)]
    with start_gateway(plant, redis_url=redis_url, events=settings) as gw:
        hooks = Webhooks(client, gw.url)
        gate = asyncio.Semaphore(16)

        async def publish(lot: str) -> dict[str, Any]:
            async with gate:
                return await hooks.publish(qms.status_changed(lot))

        answers = in_bus_order(await asyncio.gather(*(publish(lot) for lot in lots)))
        async with WsClient.connect(gw.url, gw.token("quality_engineer")) as ws:
            await ws.acknowledged()
            await ws.subscribe("recent", QUALITY_EVENTS, {"after": answers[-3]["cursor"]})
            recent = [await ws.event("recent"), await ws.event("recent")]
            # Filtered to the first lot's supplier, so were the old cursor replayed it would be a few events only.
            supplier = dataset.lots[lots[0]].supplier
            await ws.subscribe("old", QUALITY_EVENTS, {"after": answers[0]["cursor"], "filter": {"supplier": supplier}})
            refused = await ws.message("old")
            assert error_codes(refused) == ["CURSOR_EXPIRED"], refused
        await until_subscriptions(client, gw.url, 0)  # gone before the gateway stops
    assert ids(recent) == ids(answers[-2:])
    assert refused["payload"]["errors"][0]["extensions"]["argument"] == "after"


async def test_a_cursor_that_is_not_one_is_bad_user_input(gateway: Gateway, client: httpx2.AsyncClient) -> None:
    """`after: "garbage"` ends the subscription with BAD_USER_INPUT naming the argument."""
    async with WsClient.connect(gateway.url, gateway.token("quality_engineer")) as ws:
        await ws.acknowledged()
        await ws.subscribe("q", QUALITY_EVENTS, {"after": "garbage"})
        refused = await ws.message("q")
        ended = await ws.message("q")
    assert error_codes(refused) == ["BAD_USER_INPUT"]
    assert refused["payload"]["errors"][0]["extensions"]["argument"] == "after"
    assert ended["type"] == "complete"


async def test_a_subscriber_that_does_not_read_is_cut_off_and_others_get_everything(
    gateway: Gateway, client: httpx2.AsyncClient, hooks: Webhooks, qms: QmsEvents, dataset: Dataset
) -> None:
    """200 events (together more than the kernel buffers for a connection) are published while one subscriber
    reads nothing: once the gateway has waited on it for more than `subscriber_queue` events it is cut off
    with SUBSCRIBER_TOO_SLOW (seen when it reads again), counted, while a reading subscriber gets all 200."""
    count = 200
    reason = "x" * (2 * kernel_send_buffer_max() // count)  # half the events fill every buffer on the way
    lots = [lot.id for lot, _ in zip(supplied_lots(dataset), range(count), strict=False)]
    counted = await Counters.now(client, gateway.url)
    token = gateway.token("quality_engineer")
    gate = asyncio.Semaphore(8)

    async def publish(lot: str) -> dict[str, Any]:
        async with gate:
            return await hooks.publish(qms.hold_placed(lot, reason=reason))

    async with (
        WsClient.connect(gateway.url, token, small_buffers=True) as slow,
        WsClient.connect(gateway.url, token) as reader,
    ):
        for ws in (slow, reader):
            await ws.acknowledged()
            await ws.subscribe("q", QUALITY_EVENTS)
        await until_subscriptions(client, gateway.url, 2)
        publishing = asyncio.gather(*(publish(lot) for lot in lots))
        read = [await reader.event("q", within=30) for _ in lots]
        answers = await publishing
        backlog = 0
        while (message := await slow.message("q"))["type"] == "next" and not error_codes(message):
            backlog += 1
        ended = await slow.message("q")
    assert error_codes(message) == ["SUBSCRIBER_TOO_SLOW"], message
    assert "after" in message["payload"]["errors"][0]["message"], "it says how to catch up"
    assert ended["type"] == "complete"
    assert backlog < count - QUEUE, "it was cut off, not merely late"
    assert ids(read) == [a["id"] for a in sorted(answers, key=lambda a: int(a["cursor"].split("-")[1]))]
    assert await counted("lotgraph_subscribers_cut_off_total", reason="SUBSCRIBER_TOO_SLOW") == 1


async def test_an_expiring_token_ends_the_subscription(gateway: Gateway, client: httpx2.AsyncClient) -> None:
    """A token that expires 2 s after subscribing ends the stream when it expires: the WebSocket is closed 4401
    (after a TOKEN_EXPIRED error, if any message comes first) and SSE sends TOKEN_EXPIRED, then complete."""
    counted = await Counters.now(client, gateway.url)
    ws_token = short_lived_token(gateway.settings, "quality_engineer", seconds=2)
    sse_token = short_lived_token(gateway.settings, "quality_engineer", seconds=2)
    started = time.monotonic()
    async with (
        WsClient.connect(gateway.url, ws_token) as ws,
        sse_subscribe(client, gateway.url, QUALITY_EVENTS, token=sse_token) as sse,
    ):
        await ws.acknowledged()
        await ws.subscribe("q", QUALITY_EVENTS)
        sse_messages = [await sse.next(within=6), await sse.next(within=2)]
        closed = await ws.closed(within=6)
    elapsed = time.monotonic() - started
    assert closed.code == 4401 and "expired" in closed.reason, closed
    assert 0.5 < elapsed < 5, elapsed
    (kind, result), (last, _) = sse_messages
    assert kind == "next" and [e["extensions"]["code"] for e in result["errors"]] == ["TOKEN_EXPIRED"]
    assert last == "complete"
    assert await counted("lotgraph_subscribers_cut_off_total", reason="TOKEN_EXPIRED") >= 1


HOLD = """mutation($lot: ID!, $key: String!) {
  placeQualityHold(input: {lotId: $lot, reasonCode: "QH01", reason: "event test", idempotencyKey: $key}) {
    id state } }"""
OPERATION_UPDATED = "subscription($id: ID!) { operationUpdated(id: $id) { id state kind } }"


async def test_operation_updated_follows_a_hold_until_it_completes(plant: Plant, dataset: Dataset) -> None:
    """A hold left PENDING by a WMS outage is shown PENDING at once, then each retry, until it is COMPLETED
    (once WMS is back), and the subscription then ends."""
    lot = next(
        lot.id for lot in reversed(dataset.lots.values())  # far from the lots other modules hold
        if lot.quality_status == "RELEASED" and lot.remaining > 0 and lot.id not in dataset.divergent
    )  # fmt: skip
    plant.fault("wms", down=True, paths=["/v2/stock-moves"])
    with start_gateway(plant, operation_retry_seconds=0.3, events=event_settings(erp_poll_seconds=0)) as gw:
        token = gw.token("quality_engineer")
        async with httpx2.AsyncClient(timeout=60) as client:
            response = await client.post(
                f"{gw.url}/graphql", json={"query": HOLD, "variables": {"lot": lot, "key": uuid.uuid4().hex}},
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            op = response.json()["data"]["placeQualityHold"]
            assert op["state"] == "PENDING", op
            async with WsClient.connect(gw.url, token) as ws:
                await ws.acknowledged()
                await ws.subscribe("op", OPERATION_UPDATED, {"id": op["id"]})
                states = [await ws.event("op")]
                plant.clear_faults()
                while states[-1]["state"] == "PENDING":
                    states.append(await ws.event("op", within=15))
                ended = await ws.message("op")
            await until_subscriptions(client, gw.url, 0)  # gone before the gateway stops
    assert states[0] == {"id": op["id"], "state": "PENDING", "kind": "placeQualityHold"}
    assert {s["state"] for s in states[:-1]} == {"PENDING"} and states[-1]["state"] == "COMPLETED"
    assert ended["type"] == "complete"
