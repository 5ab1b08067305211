"""lotgraph as a Federation v2 subgraph: `_service { sdl }` with `@link` and `@key`, `_entities` resolved in
batches through the same loaders and the same Cedar decisions as direct queries, and `@requiresScopes` in the
SDL that draws the same boundary the policies do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.settings import Mode
from simulators import Dataset
from tests.conftest import Gateway, Lims, Plant, production_auth, start_gateway
from tests.events import in_house_lot, supplied_lots

LOT_FIELDS = "id qualityStatus material { id description } supplier { id } stockPositions { handlingUnit quantity }"
ENTITIES = (
    "query($representations: [_Any!]!) { _entities(representations: $representations) { __typename"
    f" ... on Lot {{ {LOT_FIELDS} }}"
    " ... on ProductionOrder { id status plannedQuantity producedLot { id } }"
    " ... on Inspection { id inspectionStatus: status lot { id } }"
    " ... on Material { id description }"
    " ... on Supplier { id name } } }"
)


def sdl(gateway: Gateway) -> str:
    return gateway.data("{ _service { sdl } }")["_service"]["sdl"]


def scopes_of(document: str, type_name: str, field: str | None = None) -> set[str]:
    """The scopes a `@requiresScopes` on a type (or one of its fields) names in an SDL."""
    if field is None:
        match = re.search(rf"^type {type_name} [^{{]*?(@requiresScopes\(scopes: .*?\]\))", document, re.M | re.S)
    else:
        body = re.search(rf"^type {type_name} [^{{]*\{{(.*?)^\}}", document, re.MULTILINE | re.DOTALL)
        assert body, f"no type {type_name}"
        match = re.search(rf"^\s*{field}\b[^\n]*?(@requiresScopes\(scopes: .*?\]\))", body.group(1), re.M | re.S)
    assert match, f"{type_name}.{field} has no directives"
    return set(re.findall(r'"([^"]+)"', match.group(1)))


def entities(gateway: Gateway, representations: list[dict[str, Any]], token: str | None = None) -> dict[str, Any]:
    return gateway.execute(ENTITIES, {"representations": representations}, token=token)


def test_the_sdl_links_federation_2_and_keys_every_entity(gateway: Gateway) -> None:
    document = sdl(gateway)
    assert re.search(r'@link\(url: "https://specs\.apollo\.dev/federation/v2\.\d+"', document)
    for entity in ("Lot", "ProductionOrder", "Inspection", "Material", "Supplier"):
        assert re.search(rf'^type {entity} [^{{]*@key\(fields: "id"\)', document, re.MULTILINE), entity


def test_entities_resolve_a_hundred_lots_in_batches_like_the_lots_query(
    gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    """`_entities` for 100 lots answers what `lots` answers for the same lots, in the same order, and asks the
    systems as few times as that list does (one batch per loader, not one request per lot)."""
    page = gateway.data(f"{{ lots(first: 100) {{ edges {{ node {{ {LOT_FIELDS} }} }} }} }}")["lots"]["edges"]
    direct = [edge["node"] for edge in page]
    plant.reset_stats()
    answer = entities(gateway, [{"__typename": "Lot", "id": lot["id"]} for lot in direct])
    served = plant.served()
    assert "errors" not in answer, answer["errors"]
    assert [{k: v for k, v in e.items() if k != "__typename"} for e in answer["data"]["_entities"]] == direct
    assert served["erp"] <= 3 and served["qms"] <= 2 and served["wms"] <= 1 and served["mes"] == 0, served


def test_entities_of_every_kind_resolve(gateway: Gateway, dataset: Dataset) -> None:
    lot = next(lot for lot in dataset.lots.values() if lot.order_id)
    inspection = gateway.data("query($id: ID!) { lot(id: $id) { inspections { id } } }", {"id": lot.id})
    inspection_id = inspection["lot"]["inspections"][0]["id"]
    supplier = next(iter(supplied_lots(dataset))).supplier
    answer = entities(
        gateway,
        [
            {"__typename": "ProductionOrder", "id": lot.order_id},
            {"__typename": "Inspection", "id": inspection_id},
            {"__typename": "Material", "id": lot.material},
            {"__typename": "Supplier", "id": supplier},
        ],
    )
    assert "errors" not in answer, answer["errors"]
    order, found_inspection, material, found_supplier = answer["data"]["_entities"]
    assert (order["__typename"], order["id"], order["producedLot"]) == ("ProductionOrder", lot.order_id, {"id": lot.id})
    assert (found_inspection["id"], found_inspection["lot"]) == (inspection_id, {"id": lot.id})
    assert (material["id"], material["description"]) == (lot.material, dataset.materials[lot.material].description)
    assert found_supplier["id"] == supplier and found_supplier["name"]


def test_entities_are_authorized_like_direct_queries(gateway: Gateway, dataset: Dataset) -> None:
    """A supplier's router request for its own lot, another supplier's and an unknown one: its own resolves, the
    foreign one is FORBIDDEN naming the policy, the unknown one NOT_FOUND, each at its own index."""
    own = next(iter(supplied_lots(dataset)))
    foreign = next(lot for lot in supplied_lots(dataset) if lot.supplier != own.supplier)
    token = gateway.token("supplier", supplier=own.supplier, plants=())
    ids = [own.id, foreign.id, "NO-SUCH-LOT"]
    answer = entities(gateway, [{"__typename": "Lot", "id": i} for i in ids], token=token)
    results = answer["data"]["_entities"]
    assert results[0]["id"] == own.id and results[0]["supplier"] == {"id": own.supplier}
    assert results[1] is None and results[2] is None
    by_index = {
        error["path"][1]: error["extensions"] for error in answer["errors"] if error["path"][:1] == ["_entities"]
    }
    assert by_index[1]["code"] == "FORBIDDEN" and by_index[2]["code"] == "NOT_FOUND", answer["errors"]
    direct = gateway.execute("query($id: ID!) { lot(id: $id) { id } }", {"id": foreign.id}, token=token)
    assert direct["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    ("type_name", "field", "query", "variables"),
    [
        ("Lot", None, "query($id: ID!) { lot(id: $id) { id qualityStatus } }", "lot"),
        ("Material", "standardPrice", "query($id: ID!) { material(id: $id) { standardPrice } }", "material"),
        ("Query", "auditLog", "{ auditLog(first: 1) { entries { seq } } }", None),
        ("Query", "pendingOperations", "{ pendingOperations { id } }", None),
    ],
)
def test_required_scopes_in_the_sdl_are_exactly_the_roles_the_policies_permit(
    gateway: Gateway, dataset: Dataset, type_name: str, field: str | None, query: str, variables: str | None
) -> None:
    """Every role some policy names is asked, alone, through the real endpoint: the roles the SDL lists may do
    it, the others are refused by Cedar. A router enforcing the SDL therefore refuses no one Cedar would let in."""
    document = sdl(gateway)
    listed = scopes_of(document, type_name, field)
    lot = next(iter(supplied_lots(dataset)))
    values = {"id": lot.id if variables == "lot" else lot.material} if variables else {}
    every_role = set(re.findall(r'Role::"([^"]+)"', "".join(p["text"] for p in policy_texts(gateway))))
    allowed = set()
    for role in sorted(every_role):
        token = gateway.token(role, plants=("*",), supplier=lot.supplier if role == "supplier" else None)
        answer = gateway.execute(query, values, token=token)
        codes = {error["extensions"]["code"] for error in answer.get("errors", [])}
        assert codes <= {"FORBIDDEN"}, answer
        if not codes:
            allowed.add(role)
    assert listed == allowed and listed != every_role


def policy_texts(gateway: Gateway) -> list[dict[str, Any]]:
    return gateway.data("{ policies { policies { text } } }", token=gateway.token("auditor"))["policies"]["policies"]


def test_in_house_lots_are_entities_too(gateway: Gateway, dataset: Dataset) -> None:
    lot = in_house_lot(dataset)
    answer = entities(gateway, [{"__typename": "Lot", "id": lot.id}], token=gateway.token("quality_engineer"))
    assert "errors" not in answer, answer["errors"]
    assert answer["data"]["_entities"][0]["supplier"] is None


@pytest.fixture(scope="module", params=["demo", "production"])
def federating(
    request: pytest.FixtureRequest, plant: Plant, lims: Lims, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """lotgraph federating the LIMS, as `lotgraph demo` runs it (development mode, anonymous portal readers) and
    in production mode."""
    if request.param == "demo":
        settings: dict[str, Any] = {}
    else:
        settings = {"mode": Mode.PRODUCTION, "auth": production_auth(tmp_path_factory.mktemp("idp"))}
    with start_gateway(plant, subgraphs={"lims": {"url": lims.graphql}}, **settings) as gateway:
        yield gateway


def test_a_federating_gateway_resolves_entities_exactly_like_a_plain_one(
    federating: Gateway, gateway: Gateway, dataset: Dataset
) -> None:
    """Extending the schema with the LIMS's fields rebuilds the `_Entity` union: every entity type still resolves
    for a QA manager of all plants, and a supplier's answer (FORBIDDEN and NOT_FOUND at their own index) is the
    plain gateway's, error for error."""
    made = next(lot for lot in dataset.lots.values() if lot.order_id)
    own = next(iter(supplied_lots(dataset)))
    foreign = next(lot for lot in supplied_lots(dataset) if lot.supplier != own.supplier)
    found = gateway.data("query($id: ID!) { lot(id: $id) { inspections { id } } }", {"id": made.id})
    every_kind = [
        {"__typename": "Lot", "id": made.id},
        {"__typename": "ProductionOrder", "id": made.order_id},
        {"__typename": "Inspection", "id": found["lot"]["inspections"][0]["id"]},
        {"__typename": "Material", "id": made.material},
        {"__typename": "Supplier", "id": own.supplier},
    ]
    qa_manager = {"roles": ("qa_manager",)}
    supplier = {"roles": ("supplier",), "supplier": own.supplier, "plants": ()}
    answers = {}
    for name, representations, caller in [
        ("every kind", every_kind, qa_manager),
        ("a supplier's", [{"__typename": "Lot", "id": i} for i in (own.id, foreign.id, "NO-SUCH-LOT")], supplier),
    ]:
        roles, scope = caller["roles"], {k: v for k, v in caller.items() if k != "roles"}
        plain = entities(gateway, representations, gateway.token(*roles, **scope))
        answers[name] = entities(federating, representations, federating.token(*roles, **scope))
        assert answers[name] == plain, name
    assert "errors" not in answers["every kind"], answers["every kind"]["errors"]
    codes = [error["extensions"]["code"] for error in answers["a supplier's"]["errors"]]
    assert codes == ["FORBIDDEN", "NOT_FOUND"], answers["a supplier's"]["errors"]
