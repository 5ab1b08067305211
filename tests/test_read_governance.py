"""Reads are governed by the Cedar policies on every path: direct id, lists, genealogy, nested references."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx2
import pytest

from gateway.auth import Principal
from gateway.authz import Guard
from gateway.model import Lot
from gateway.reads import Loaders
from policies.engine import POLICY_DIR, PolicyEngine
from simulators import Dataset
from tests.conftest import Gateway, Plant, start_gateway


def _supplier_lots(dataset: Dataset) -> tuple[str, str, str]:
    """A supplier, one of its lots, and a lot of another supplier."""
    own = next(lot for lot in dataset.lots.values() if lot.supplier)
    other = next(lot for lot in dataset.lots.values() if lot.supplier and lot.supplier != own.supplier)
    return own.supplier, own.id, other.id


def _codes(result: dict) -> set[str]:
    return {error["extensions"]["code"] for error in result.get("errors", [])}


def test_supplier_reads_its_own_lot_but_not_anothers(gateway: Gateway, dataset: Dataset) -> None:
    supplier, own, other = _supplier_lots(dataset)
    token = gateway.token("supplier", plants=(), supplier=supplier)
    query = "query($id: ID!) { lot(id: $id) { id qualityStatus supplier { id } } }"
    assert gateway.data(query, {"id": own}, token=token)["lot"]["supplier"]["id"] == supplier
    denied = gateway.execute(query, {"id": other}, token=token)
    assert denied["data"] == {"lot": None}
    error = denied["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["extensions"]["policyIds"] == []
    assert "no policy permits" in error["message"]


def test_lots_asked_together_that_the_erp_does_not_know_are_each_not_found_by_their_own_id(
    gateway: Gateway, dataset: Dataset
) -> None:
    """One request's lot reads are decided in one batch: each unknown lot's NOT_FOUND names that lot."""
    query = "query($a: ID!, $b: ID!, $c: ID!) { a: lot(id: $a) { id } b: lot(id: $b) { id } c: lot(id: $c) { id } }"
    result = gateway.execute(query, {"a": dataset.recall_lot, "b": "NO-SUCH-LOT-1", "c": "NO-SUCH-LOT-2"})
    assert result["data"] == {"a": {"id": dataset.recall_lot}, "b": None, "c": None}
    errors = {error["path"][0]: error for error in result["errors"]}
    assert {path: error["extensions"]["code"] for path, error in errors.items()} == {"b": "NOT_FOUND", "c": "NOT_FOUND"}
    assert "NO-SUCH-LOT-1" in errors["b"]["message"] and "NO-SUCH-LOT-2" in errors["c"]["message"]


def test_a_list_of_lots_alike_is_decided_lot_by_lot_when_a_policy_names_one_of_them(tmp_path: Path) -> None:
    """A list's lots are asked about once per kind (plant, material, supplier) only while no policy names a lot:
    with one that forbids lot B1, B1 is left out of a list of lots otherwise alike, and only B1."""
    directory = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, directory)
    (directory / "zz-quarantine.cedar").write_text(
        '@id("quarantined-lot")\n@reason("This lot is under investigation.")\n'
        'forbid (principal, action == Lotgraph::Action::"readLot", resource == Lotgraph::Lot::"B1");\n'
    )
    reader = Principal("pat", "Pat", frozenset({"qa_manager"}), frozenset({"*"}), None, frozenset({"pwd"}), None, None)
    lots = {
        lot_id: Lot(id=lot_id, material_id="M1", plant_id="P100", supplier_id=None, supplier_batch=None,
                    manufactured_on=None, expires_on=None, restricted=False, country_of_origin=None,
                    purchase_order=None, production_order_id=None, customer=None)
        for lot_id in ("B1", "B2", "B3")
    }  # fmt: skip

    async def readable(engine: PolicyEngine) -> set[str]:
        loaders = Loaders(upstream=None)  # type: ignore[arg-type]  # every batch primed: no upstream is asked
        loaders.batch.prime_many(lots)
        return await Guard(engine, reader, loaders).readable_lots(lots)

    assert asyncio.run(readable(PolicyEngine())) == {"B1", "B2", "B3"}
    assert asyncio.run(readable(PolicyEngine(directory))) == {"B2", "B3"}


def test_supplier_lists_only_its_own_lots(gateway: Gateway, dataset: Dataset) -> None:
    supplier, _, other = _supplier_lots(dataset)
    token = gateway.token("supplier", plants=(), supplier=supplier)
    own_count = sum(1 for lot in dataset.lots.values() if lot.supplier == supplier)
    page = gateway.data("{ lots(first: 200) { totalCount edges { node { id supplier { id } } } } }", token=token)
    assert page["lots"]["totalCount"] == own_count
    assert {edge["node"]["supplier"]["id"] for edge in page["lots"]["edges"]} == {supplier}
    other_supplier = dataset.lots[other].supplier
    sneaky = gateway.execute(
        "query($s: String!) { lots(filter: {supplier: $s}, first: 50) { totalCount edges { node { id } } } }",
        {"s": other_supplier},
        token=token,
    )
    assert sneaky["data"] is None and _codes(sneaky) == {"FORBIDDEN"}, "not even the other supplier's count"


def test_supplier_genealogy_and_nested_paths_hide_other_lots(gateway: Gateway, dataset: Dataset) -> None:
    supplier, own, _ = _supplier_lots(dataset)
    token = gateway.token("supplier", plants=(), supplier=supplier)
    traced = gateway.execute(
        "query($id: ID!) { lot(id: $id) { genealogy(direction: DOWNSTREAM, maxDepth: 3) "
        "{ redactedCount nodes { id supplier { id } } edges { from to } } } }",
        {"id": own},
        token=token,
    )
    graph = traced["data"]["lot"]["genealogy"]
    assert all(node["supplier"] and node["supplier"]["id"] == supplier for node in graph["nodes"])
    assert graph["redactedCount"] > 0, "the downstream lots exist but are not shown"
    (notice,) = traced["errors"]  # said without being asked: a trace with lots left out is no complete recall
    assert notice["extensions"] == {"code": "GENEALOGY_REDACTED", "redactedCount": graph["redactedCount"]}
    assert notice["path"] == ["lot", "genealogy"]
    # An inspection of another supplier's lot must not open a side door to that lot.
    foreign = next(i for i in dataset.inspection_lots.values() if dataset.lots[i.lot].supplier != supplier)
    result = gateway.execute(
        "query($id: ID!) { inspection(id: $id) { id lot { id } } }", {"id": foreign.id}, token=token
    )
    assert result["data"]["inspection"] is None and _codes(result) == {"FORBIDDEN"}


def test_supplier_never_sees_cost(gateway: Gateway, dataset: Dataset) -> None:
    supplier, own, _ = _supplier_lots(dataset)
    result = gateway.execute(
        "query($id: ID!) { lot(id: $id) { material { id standardPrice currency } } }",
        {"id": own},
        token=gateway.token("supplier", plants=(), supplier=supplier),
    )
    material = result["data"]["lot"]["material"]
    assert material["id"] and material["standardPrice"] is None and material["currency"] is None
    assert {e["extensions"]["policyIds"][0] for e in result["errors"]} == {"suppliers-never-see-cost"}
    internal = gateway.data(
        "query($id: ID!) { lot(id: $id) { material { standardPrice } } }",
        {"id": own},
        token=gateway.token("qa_manager"),
    )
    assert internal["lot"]["material"]["standardPrice"] > 0


def test_plant_scoped_role_sees_only_its_plants(gateway: Gateway, dataset: Dataset) -> None:
    token = gateway.token("plant_operator", plants=("P100",))
    p100 = next(lot.id for lot in dataset.lots.values() if lot.plant == "P100")
    p200 = next(lot.id for lot in dataset.lots.values() if lot.plant == "P200")
    assert gateway.data("query($id: ID!) { lot(id: $id) { id } }", {"id": p100}, token=token)["lot"]["id"] == p100
    denied = gateway.execute("query($id: ID!) { lot(id: $id) { id } }", {"id": p200}, token=token)
    assert _codes(denied) == {"FORBIDDEN"}
    page = gateway.data("{ lots(first: 100) { edges { node { id plant { id } } } } }", token=token)
    assert {edge["node"]["plant"]["id"] for edge in page["lots"]["edges"]} <= {"P100"}


@pytest.mark.parametrize(
    ("header", "reason"),
    [("Bearer not-a-jwt", "token"), ("Basic dXNlcjpwdw==", "Bearer")],
)
def test_bad_credentials_are_refused_with_401(gateway: Gateway, header: str, reason: str) -> None:
    response = httpx2.post(f"{gateway.url}/graphql", json={"query": "{ contracts { name } }"},
                          headers={"Authorization": header})  # fmt: skip
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert reason.lower() in body["errors"][0]["message"].lower()


def test_production_refuses_anonymous_requests(plant: Plant, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.auth import AuthSettings
    from gateway.settings import Mode

    key = tmp_path / "idp.pem"
    from gateway.auth import DevSigner

    signer = DevSigner.load_or_create(tmp_path / "idp-private.pem")
    key.write_text(__import__("json").dumps(signer.jwks()))
    with start_gateway(plant, mode=Mode.PRODUCTION, auth=AuthSettings(key_file=key)) as gateway:
        anonymous = httpx2.post(f"{gateway.url}/graphql", json={"query": "{ contracts { name } }"})
        token = signer.mint("someone", roles=("portal_reader",), plants=("*",), issuer=gateway.settings.auth.issuer,
                            audience=gateway.settings.auth.audience)  # fmt: skip
        allowed = gateway.execute("{ contracts { name } }", token=token)
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert allowed["data"]["contracts"]
