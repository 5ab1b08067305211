"""Outbound notifications end to end, on a plant of its own with a gateway in production mode: the plant's QMS
reports through its own API, the gateway's configured targets are supervisors' pagers (`simulators/pager.py`, real
HTTP on loopback, each verifying with its own secret), and what became of each notification is read from the
pagers, the exception queue and `/metrics`."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from standardwebhooks.webhooks import Webhook

from gateway.events.settings import EventSettings
from gateway.notifications import NotificationSettings
from gateway.servers import ServerGroup, free_block
from gateway.settings import Mode
from simulators import pager
from simulators.shift import Shift
from tests.conftest import Gateway, Plant, eventually, plant_of_its_own, production_auth, start_gateway
from tests.events import SECRET, Scrape

SUPERVISORS = "whsec_" + base64.b64encode(b"P100 supervisors' pager secret!!").decode()
OTHERS = "whsec_" + base64.b64encode(b"P200 supervisors' pager secret!!").decode()
FAILED_INSPECTIONS = [{"type": "InspectionCompleted", "passed": False}]
# Containment opens a nonconformance on a failed inspection's lot: P100's and P300's pagers are told of the failed
# inspection only, so each test expects one notification per lot; P200's of both.
FAILURES = [*FAILED_INSPECTIONS, {"type": "NonconformanceOpened"}]
ATTEMPTS = 3
ENTRIES = """query($lot: String!) { exceptions(filter: {kind: NOTIFICATION, lotId: $lot}) { edges { node {
  id state subject reasonCode reason attempts plants payload correlationId resolvedBy resolution } } } }"""
RETRY = "mutation($id: ID!) { retryException(id: $id) { state } }"
DISCARD = """mutation($id: ID!, $why: String!) {
  discardException(id: $id, reason: $why) { state resolvedBy resolution } }"""


@pytest.fixture(scope="module")
def own_plant() -> Iterator[tuple[Plant, Shift]]:
    with plant_of_its_own(seed=13) as own:
        yield own


@pytest.fixture(scope="module")
def pagers() -> Iterator[dict[str, str]]:
    """P100's and P200's supervisors' pagers, each with its own secret."""
    group = ServerGroup()
    urls = {name: group.add(name, pager.create_app(secret)).url for name, secret in (("p100", SUPERVISORS),
                                                                                     ("p200", OTHERS))}  # fmt: skip
    with group.running_in_thread():
        yield urls


@pytest.fixture(scope="module")
def night_shift_port() -> int:
    """Where P300's target is configured, with nothing listening (until a test starts a pager there)."""
    return free_block(1)


@pytest.fixture(scope="module")
def gateway(
    own_plant: tuple[Plant, Shift],
    pagers: dict[str, str],
    night_shift_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    plant, _ = own_plant
    targets = {
        "p100-supervisors": {"url": f"{pagers['p100']}/api/pages", "secret": SUPERVISORS,
                             "events": FAILED_INSPECTIONS, "plants": ["P100"]},
        "p200-supervisors": {"url": f"{pagers['p200']}/api/pages", "secret": OTHERS, "events": FAILURES,
                             "plants": ["P200"]},
        "p300-night-shift": {"url": f"http://127.0.0.1:{night_shift_port}/api/pages", "secret": SUPERVISORS,
                             "events": FAILED_INSPECTIONS, "plants": ["P300"]},
    }  # fmt: skip
    notifications = NotificationSettings(
        targets=targets, attempts=ATTEMPTS, backoff_seconds=0.1, max_backoff_seconds=0.3, timeout_seconds=2,
        poll_seconds=0.2,
    )  # fmt: skip
    with start_gateway(
        plant, mode=Mode.PRODUCTION, auth=production_auth(tmp_path_factory.mktemp("idp")),
        events=EventSettings(webhook_secrets={"qms": SECRET}, erp_poll_seconds=0), notifications=notifications,
        operation_retry_seconds=0.5,
    ) as gateway:  # fmt: skip
        plant.admin("qms", "PUT", "events", json={"webhook": {"url": f"{gateway.url}/webhooks/qms", "secret": SECRET}})
        try:
            yield gateway
        finally:
            plant.admin("qms", "PUT", "events", json={})


@pytest.fixture(scope="module")
def inspection(own_plant: tuple[Plant, Shift]) -> Callable[[str], tuple[str, dict[str, Any]]]:
    """The next undecided inspection of a lot in stock in a plant, never the same twice: (lot, inspection)."""
    plant, shift = own_plant
    dataset = plant.dataset
    used: set[str] = set()

    def pick(plant_id: str) -> tuple[str, dict[str, Any]]:
        chosen = next(
            i for i in dataset.inspection_lots.values()
            if i.id not in used and dataset.lots[i.lot].plant == plant_id and dataset.lots[i.lot].remaining > 0
            and shift.qms.inspection_lots[i.id].usage_decision is None and i.lot not in dataset.divergent
        )  # fmt: skip
        used.add(chosen.id)
        (native,) = httpx2.get(f"{plant.url('qms')}/api/v1/inspection-lots", params={"lot_ids": chosen.lot}).json()[
            "items"
        ]
        return chosen.lot, native

    return pick


def _record(plant: Plant, inspection: dict[str, Any], passed: bool) -> None:
    """A lab technician records results in the QMS: all within the limits, or the first one far outside."""
    results = []
    for n, c in enumerate(inspection["characteristics"]):
        low, high = c["lower_limit"], c["upper_limit"]
        results.append({"code": c["code"], "result": (low + high) / 2 if passed or n else high + (high - low)})
    url = f"{plant.url('qms')}/api/v1/inspection-lots/{inspection['id']}/results"
    recorded = httpx2.post(url, json={"results": results, "decided_by": "lab-tech-5"}, timeout=10)
    assert recorded.status_code == 200, recorded.text


def _open_nonconformance(plant: Plant, lot: str) -> None:
    """A quality engineer opens a nonconformance in the QMS."""
    body = {"lot_id": lot, "category": "Contamination", "severity": "major", "description": "found on the line"}
    opened = httpx2.post(f"{plant.url('qms')}/api/v1/nonconformances", json=body, timeout=10)
    assert opened.status_code == 201, opened.text


def _fault(pager_url: str, fault: dict[str, Any] | None) -> None:
    """Make a pager fail as configured (the simulators' shared admin API), or behave again (None)."""
    if fault is None:
        httpx2.delete(f"{pager_url}/_admin/faults", timeout=10).raise_for_status()
    else:
        httpx2.post(f"{pager_url}/_admin/faults", json=fault, timeout=10).raise_for_status()


def _pages(pager_url: str, lot: str) -> list[dict[str, Any]]:
    """What a pager received about a lot."""
    response = httpx2.get(f"{pager_url}/_admin/lots/{lot}", timeout=10)
    return [] if response.status_code == 404 else response.json()["pages"]


def _contained(plant: Plant, lot: str) -> bool:
    """Held by containment all the way to the ERP, each system says so itself."""
    wms = plant.admin("wms", "GET", f"lots/{lot}").json()
    erp = plant.admin("erp", "GET", f"lots/{lot}").json()
    booked = {row["InventoryStockType"] for row in erp["stock"] if float(row["MatlWrhsStkQtyInMatlBaseUnit"])}
    return {hu["status"] for hu in wms["handling_units"]} == {"BLOCKED"} and booked == {"07"}


def _entries(gateway: Gateway, lot: str, token: str) -> list[dict[str, Any]]:
    return [edge["node"] for edge in gateway.data(ENTRIES, {"lot": lot}, token=token)["exceptions"]["edges"]]


async def _idle(gateway: Gateway) -> None:
    """Until every inbound event's reactions have run (so whatever was to be stored in the outbox is)."""
    for _ in range(2):  # twice: an event may still be on its way from the QMS the first time
        await eventually(lambda: _gauge(gateway, "lotgraph_inbox_pending") == 0)
        await asyncio.sleep(0.5)


def _gauge(gateway: Gateway, name: str, **labels: str) -> float:
    return Scrape(httpx2.get(f"{gateway.url}/metrics", timeout=10).text).value(name, **labels)


async def test_a_failed_inspection_notifies_its_plants_supervisors_once_signed(
    own_plant: tuple[Plant, Shift], pagers: dict[str, str], gateway: Gateway, inspection: Callable
) -> None:
    plant, _ = own_plant
    passed_lot, passed = inspection("P100")
    failed_lot, failed = inspection("P100")
    _record(plant, passed, passed=True)
    _record(plant, failed, passed=False)
    (page,) = await eventually(lambda: _pages(pagers["p100"], failed_lot))
    received = page["as_received"]
    message = Webhook(SUPERVISORS).verify(received["body"], received["headers"])  # the reference library
    assert received["headers"]["webhook-id"].startswith("msg_")
    assert message["type"] == "InspectionCompleted" and message["timestamp"]
    data = message["data"]
    assert (data["lotId"], data["plant"], data["source"], data["type"]) == (failed_lot, "P100", "qms", message["type"])
    assert data["payload"]["passed"] is False and data["payload"]["id"] == failed["id"] and data["correlationId"]
    with pytest.raises(Exception, match="signature"):
        Webhook(OTHERS).verify(received["body"], received["headers"])
    await _idle(gateway)
    assert _pages(pagers["p100"], passed_lot) == [], "a passed inspection is not a quality failure"
    assert _pages(pagers["p200"], failed_lot) == [], "another plant's supervisors are not told"
    assert len(_pages(pagers["p100"], failed_lot)) == 1
    assert _gauge(gateway, "lotgraph_notification_attempts_total", target="p100-supervisors", outcome="delivered") >= 1
    assert _gauge(gateway, "lotgraph_notifications_undelivered", target="p100-supervisors") == 0


async def test_an_event_whose_reactions_run_again_makes_one_notification(
    own_plant: tuple[Plant, Shift], pagers: dict[str, str], gateway: Gateway
) -> None:
    """A nonconformance opened while the QMS cannot say whether its lot is held: containment fails transiently, so
    the dispatcher runs the event's reactions again (the notification's among them) until the QMS answers."""
    plant, _ = own_plant
    lot = next(lot.id for lot in plant.dataset.lots.values()
               if lot.plant == "P200" and lot.quality_status == "RELEASED" and lot.remaining > 0
               and lot.id not in plant.dataset.divergent)  # fmt: skip
    plant.fault("qms", error_rate=1.0, status=503, paths=["/api/v1/holds"])
    try:
        _open_nonconformance(plant, lot)
        await eventually(lambda: _pages(pagers["p200"], lot))
        rounds = _gauge(gateway, "lotgraph_upstream_requests_total", source="qms", outcome="UPSTREAM_UNAVAILABLE")
        # Two more of containment's tries (one a round): its reactions, the notification's included, ran again.
        await eventually(lambda: _gauge(gateway, "lotgraph_upstream_requests_total", source="qms",
                                        outcome="UPSTREAM_UNAVAILABLE") >= rounds + 2)  # fmt: skip
    finally:
        plant.clear_faults()
    await eventually(lambda: _contained(plant, lot))
    await _idle(gateway)
    (page,) = _pages(pagers["p200"], lot)
    assert page["type"] == "NonconformanceOpened" and page["plant"] == "P200"


async def test_a_failing_target_is_retried_then_parked_and_delivered_when_retried_after_the_fix(
    own_plant: tuple[Plant, Shift], pagers: dict[str, str], gateway: Gateway, inspection: Callable
) -> None:
    plant, _ = own_plant
    lot, failed = inspection("P100")
    manager = gateway.token("qa_manager", sub="qa-ines", plants=("P100",))
    _fault(pagers["p100"], {"error_rate": 1.0, "status": 500})
    try:
        _record(plant, failed, passed=False)
        (entry,) = await eventually(lambda: _entries(gateway, lot, manager))
        assert (entry["state"], entry["reasonCode"], entry["attempts"]) == ("OPEN", "TARGET_REFUSED", ATTEMPTS)
        assert entry["reason"].startswith("target p100-supervisors: HTTP 500: ") and "injected error" in entry["reason"]
        assert entry["plants"] == ["P100"] and entry["correlationId"] and entry["subject"].startswith("msg_")
        assert entry["payload"]["target"] == "p100-supervisors"
        assert entry["payload"]["notification"]["data"]["lotId"] == lot
        await eventually(lambda: _contained(plant, lot))  # containment never waited for the pager
        assert _pages(pagers["p100"], lot) == []
        assert _gauge(gateway, "lotgraph_notifications_undelivered", target="p100-supervisors") == 1
        refused = _gauge(gateway, "lotgraph_notification_attempts_total", target="p100-supervisors", outcome="refused")
        assert refused >= ATTEMPTS
        elsewhere = gateway.token("qa_manager", plants=("P200",))
        assert _entries(gateway, lot, elsewhere) == [], "another plant's manager does not see it"
    finally:
        _fault(pagers["p100"], None)
    assert gateway.data(RETRY, {"id": entry["id"]}, token=manager)["retryException"]["state"] in ("RETRIED", "RESOLVED")
    (page,) = await eventually(lambda: _pages(pagers["p100"], lot))
    assert page["id"] == entry["subject"], "the same message, under the same webhook-id"
    (entry,) = await eventually(lambda: [e for e in _entries(gateway, lot, manager) if e["state"] == "RESOLVED"])
    assert (entry["resolvedBy"], entry["resolution"]) == ("qa-ines", "delivered")
    assert _gauge(gateway, "lotgraph_notifications_undelivered", target="p100-supervisors") == 0
    audit = gateway.data(
        'query($r: String!) { auditLog(filter: {resource: $r}) { entries { actor action decision details } } }',
        {"r": f"ExceptionEntry::{entry['id']}"}, token=gateway.token("auditor"),
    )["auditLog"]["entries"]  # fmt: skip
    assert [(e["actor"], e["action"], e["decision"], e["details"]["kind"]) for e in audit] == [
        ("qa-ines", "retryException", "ALLOW", "NOTIFICATION")
    ]


async def test_an_unreachable_target_is_parked_and_a_discard_gives_it_up(
    own_plant: tuple[Plant, Shift], gateway: Gateway, night_shift_port: int, inspection: Callable
) -> None:
    plant, _ = own_plant
    lot, failed = inspection("P300")
    _record(plant, failed, passed=False)
    manager = gateway.token("qa_manager", sub="qa-omar", plants=("P300",))
    (entry,) = await eventually(lambda: _entries(gateway, lot, manager))
    assert (entry["state"], entry["reasonCode"]) == ("OPEN", "TARGET_UNREACHABLE"), entry
    assert entry["reason"].startswith("target p300-night-shift: ConnectError")
    assert _gauge(gateway, "lotgraph_notifications_undelivered", target="p300-night-shift") == 1
    await eventually(lambda: _contained(plant, lot))
    elsewhere = gateway.token("qa_manager", plants=("P100",))
    refused = gateway.execute(DISCARD, {"id": entry["id"], "why": "x"}, token=elsewhere)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    discarded = gateway.data(DISCARD, {"id": entry["id"], "why": "the night shift was told by phone"}, token=manager)
    assert discarded["discardException"] == {"state": "DISCARDED", "resolvedBy": "qa-omar",
                                             "resolution": "the night shift was told by phone"}  # fmt: skip
    assert _gauge(gateway, "lotgraph_notifications_undelivered", target="p300-night-shift") == 0
    # The target coming back later is not sent what was given up.
    group = ServerGroup()
    night_shift = group.add("night", pager.create_app(SUPERVISORS), port=night_shift_port)
    with group.running_in_thread():
        await asyncio.sleep(1.0)
        assert _pages(night_shift.url, lot) == []
    again = gateway.execute(RETRY, {"id": entry["id"]}, token=manager)
    assert again["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", "a discarded entry is not retried"


def test_the_settings_name_what_is_wrong_with_a_target(tmp_path: Path) -> None:
    from gateway.errors import ConfigurationError
    from gateway.settings import load_settings

    target = {"url": "https://pager.example/api", "secret": SUPERVISORS, "events": FAILURES}
    for wrong, setting, says in (
        ({"url": "http://pager.example/api"}, "url", "must use https"),
        ({"secret": "whsec_dG9vIHNob3J0"}, "secret", "Standard Webhooks secret"),
        ({"events": [{"type": "OperationUpdated"}]}, "events.0.type", "the gateway's own event"),
    ):
        with pytest.raises(ConfigurationError) as refused:
            load_settings(notifications={"targets": {"pager": {**target, **wrong}}})
        assert refused.value.setting == f"LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__{setting.upper().replace('.', '__')}"
        assert says in str(refused.value)
        assert "dG9vIHNob3J0" not in str(refused.value), "a secret is never echoed"


async def test_replicas_sharing_a_postgresql_store_never_claim_one_delivery_twice(postgres_url: str) -> None:
    """Two replicas' workers claiming at once from one outbox: every due delivery goes to exactly one of them, and
    an event stored again for a target adds no second delivery."""
    from gateway.store import Store

    store = await Store.open(postgres_url)
    try:
        outbox = store.outbox
        added = [
            await outbox.add(f"msg_{n}", "pager", f"evt-{n}", "InspectionCompleted", plants=["P100"], lot_id=None,
                             correlation_id=None, body={"n": n})
            for n in range(40)
        ]  # fmt: skip
        again = await outbox.add("msg_x", "pager", "evt-0", "InspectionCompleted", plants=[], lot_id=None,
                                 correlation_id=None, body={})  # fmt: skip
        assert all(added) and again is False
        first, second = await asyncio.gather(
            outbox.claim("replica-a", 30, 40, ["pager"]), outbox.claim("replica-b", 30, 40, ["pager"])
        )
        a, b = {d.id for d in first}, {d.id for d in second}
        assert not a & b and a | b == {f"msg_{n}" for n in range(40)}
        assert await outbox.claim("replica-c", 30, 40, ["pager"]) == [], "leased deliveries are nobody else's"
        assert await outbox.delivered(next(iter(a)), "replica-b") is False, "only the lease's holder records"
    finally:
        await store.aclose()
