"""Partial results: a failing source costs its own fields, with a code and the source named, never the query."""

from __future__ import annotations

from simulators import Dataset
from tests.conftest import Gateway, Plant, start_gateway

LOT = """query($id: ID!) { lot(id: $id) {
  id material { id } qualityStatus holds { id } inspections { id status } stockPositions { handlingUnit } } }"""


def _errors_by_field(result: dict) -> dict[str, dict]:
    return {error["path"][-1]: error for error in result.get("errors", [])}


_TAKEN: set[str] = set()


def _a_lot(dataset: Dataset) -> str:
    """A lot with stock that no other test here has read: nothing of it is cached, so an outage shows."""
    lot_id = next(lot.id for lot in reversed(dataset.lots.values()) if lot.remaining > 0 and lot.id not in _TAKEN)
    _TAKEN.add(lot_id)
    return lot_id


def test_qms_down_gives_partial_results(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    lot_id = _a_lot(dataset)
    plant.fault("qms", down=True)
    result = gateway.execute(LOT, {"id": lot_id})
    lot = result["data"]["lot"]
    assert lot["material"]["id"] == dataset.lots[lot_id].material
    assert lot["stockPositions"], "WMS fields still resolve"
    errors = _errors_by_field(result)
    assert set(errors) == {"qualityStatus", "holds", "inspections"}
    for error in errors.values():
        assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert error["extensions"]["source"] == "qms"


PAGE = """query { lots(first: 20) { edges { node { id ...Quality stock: stockPositions { handlingUnit } } } } }
fragment Quality on Lot { qualityStatus holds { id } inspections { id status } }"""


def test_qms_down_fails_the_qms_fields_of_every_lot_of_a_page(plant: Plant) -> None:
    """A list loads its lots' fields before they resolve (one request per source): an outage still costs each lot
    exactly its own QMS fields, through fragments and aliases, and the same page costs one request per source."""
    with start_gateway(plant) as gateway:  # its own read cache: no stale entry can stand in for QMS
        plant.fault("qms", down=True)
        result = gateway.execute(PAGE)
        edges = result["data"]["lots"]["edges"]
        assert len(edges) == 20
        assert all(edge["node"]["stock"] is not None for edge in edges), "WMS fields still resolve"
        failed = {(error["path"][2], error["path"][-1]): error["extensions"] for error in result["errors"]}
        assert set(failed) == {(i, field) for i in range(20) for field in ("qualityStatus", "holds", "inspections")}
        assert all(e["code"] == "UPSTREAM_UNAVAILABLE" and e["source"] == "qms" for e in failed.values())
        plant.clear_faults()
        plant.reset_stats()
        assert "errors" not in gateway.execute(PAGE)
        assert plant.served() == {"erp": 1, "qms": 3, "wms": 1, "mes": 0}


def test_a_failed_batch_of_a_page_is_asked_once_and_reported_by_every_lot_it_failed(plant: Plant) -> None:
    """A page loads ahead what its lots' fields read; a batch QMS refuses is kept as refused for the request: each
    lot's QMS fields report it, and none of them asks QMS again (one request per batch, refused or not)."""
    with start_gateway(plant) as gateway:
        plant.fault("qms", error_rate=1.0, status=400)  # refused at once: nothing retries it
        plant.reset_stats()
        result = gateway.execute(PAGE)
        failed = {(error["path"][2], error["path"][-1]) for error in result["errors"]}
        assert failed == {(i, field) for i in range(20) for field in ("qualityStatus", "holds", "inspections")}
        assert {error["extensions"]["source"] for error in result["errors"]} == {"qms"}
        assert plant.served()["qms"] == 3  # quality, holds, inspections: once each
        plant.clear_faults()


def test_malformed_payload_is_a_contract_violation_naming_the_field(
    gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot_id = next(i.lot for i in reversed(dataset.inspection_lots.values()) if i.lot not in _TAKEN)
    _TAKEN.add(lot_id)
    plant.fault("qms", malformed=True, paths=["/api/v1/inspection-lots*"])
    result = gateway.execute(LOT, {"id": lot_id})
    errors = _errors_by_field(result)
    assert set(errors) == {"inspections"}, result.get("errors")
    extensions = errors["inspections"]["extensions"]
    assert extensions["code"] == "CONTRACT_VIOLATION"
    assert extensions["source"] == "qms"
    assert extensions["contract"] == "qms.inspection_lot.by_lot@1"
    assert extensions["field"] == "items.0.id"
    assert "items.0.id" in errors["inspections"]["message"]
    assert result["data"]["lot"]["holds"] is not None, "the rest of QMS still answers"


def test_slow_source_times_out_with_its_own_code(plant: Plant, dataset: Dataset) -> None:
    with start_gateway(plant, sources={"wms": {"read_timeout": 0.3}}) as gateway:
        plant.fault("wms", timeout=True)
        result = gateway.execute(LOT, {"id": _a_lot(dataset)})
    errors = _errors_by_field(result)
    assert errors["stockPositions"]["extensions"] == {
        "code": "UPSTREAM_TIMEOUT", "source": "wms"
    }  # fmt: skip
    assert result["data"]["lot"]["material"] is not None


def test_unreachable_source_is_unavailable(plant: Plant, dataset: Dataset) -> None:
    from gateway.servers import free_port

    with start_gateway(plant, sources={"mes": {"url": f"http://127.0.0.1:{free_port()}"}}) as gateway:
        result = gateway.execute(
            "query($id: ID!) { lot(id: $id) { id genealogy(direction: UPSTREAM) { nodes { id } } } }",
            {"id": _a_lot(dataset)},
        )
    assert result["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert result["errors"][0]["extensions"]["source"] == "mes"
    assert result["data"]["lot"]["id"]


def test_consistency_marks_an_unreachable_system(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    plant.fault("wms", down=True)
    consistency = gateway.data(
        "query($id: ID!) { lot(id: $id) { consistency { consistent systems { system reachable errorCode } } } }",
        {"id": _a_lot(dataset)},
    )["lot"]["consistency"]
    views = {view["system"]: view for view in consistency["systems"]}
    assert views["WMS"] == {"system": "WMS", "reachable": False, "errorCode": "UPSTREAM_UNAVAILABLE"}
    assert views["ERP"]["reachable"] is True
    assert consistency["consistent"] in (None, False)


def test_a_failing_source_is_answered_from_cache_flagged_stale(
    gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot_id = _a_lot(dataset)
    fresh = gateway.execute(LOT, {"id": lot_id})
    assert "errors" not in fresh and "extensions" not in fresh
    plant.fault("qms", down=True)
    stale = gateway.execute(LOT, {"id": lot_id})
    assert "errors" not in stale
    assert stale["data"] == fresh["data"]
    contracts = {entry["contract"] for entry in stale["extensions"]["stale"]}
    assert {"qms.lot_quality.read", "qms.hold.by_lot", "qms.inspection_lot.by_lot"} <= contracts


def test_concurrent_identical_loads_share_one_upstream_call(plant: Plant, dataset: Dataset) -> None:
    import concurrent.futures

    lot_id = _a_lot(dataset)
    with start_gateway(plant) as gateway:
        plant.fault("qms", latency_ms=300, paths=["/api/v1/lots"])
        plant.reset_stats()
        query = "query($id: ID!) { lot(id: $id) { qualityStatus } }"
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(lambda _: gateway.execute(query, {"id": lot_id}), range(5)))
    assert all(a["data"]["lot"]["qualityStatus"] for a in answers)
    assert plant.admin("qms", "GET", "stats").json()["by_endpoint"]["GET /api/v1/lots"] == 1
