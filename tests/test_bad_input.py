"""Bad input is the caller's mistake, answered as such: a 4xx, or GraphQL errors that each carry a code other than
INTERNAL_SERVER_ERROR. Requests are generated from the live schema: every argument of every root query and mutation
field (and every field of an input object argument) gets values of the wrong type, unknown enum values, objects
where an id belongs, oversize strings and odd unicode cursors; `_entities` gets malformed representations; bodies
that are not GraphQL requests at all go over POST, GET and SSE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
    is_leaf_type,
)

from gateway.auth import AuthSettings, DevSigner
from gateway.settings import Mode
from schema import build_schema
from tests.conftest import Gateway, Plant, start_gateway

HUGE = "x" * 100_000
ODD = ["²", "²-0", "\u0000", "\ud800", "-1", "9" * 40, "", " "]
BAD: dict[str, list[Any]] = {  # by the kind of the named input type
    "Int": ["abc", 2**40, 1.5, True, {"a": 1}],
    "Float": ["abc", {"a": 1}],
    "Boolean": ["yes", 0],
    "String": [{"a": 1}, 42, [1], HUGE, *ODD],
    "ID": [{"a": 1}, [1], 1.5, HUGE, *ODD],
    "JSON": [HUGE],
    "DateTime": ["yesterday", 42, "²"],
    "enum": ["NOPE", 5, {"a": 1}],
    "input": ["x", [1], {"nope": 1}],
}
REPRESENTATIONS = ["x", 42, None, {"id": "X"}, {"__typename": "Nope", "id": "X"}, {"__typename": "Lot"},
                   {"__typename": "Lot", "id": {"a": 1}}, {"__typename": "Lot", "id": HUGE},
                   {"__typename": "Lot", "id": "X", "extra": 1}, {"__typename": "LotConnection", "id": "X"},
                   {"__typename": "Lot", "id": True}]  # fmt: skip
BODIES = [b"null", b"42", b'"x"', b"[1]", b"\xff\xfe{", b"[" * 5000 + b"]" * 5000, b'{"query": {"a": 1}}',
          b'{"query": "{ __typename }", "variables": "x"}', b"{" * 5000]  # fmt: skip


def _kind(named: GraphQLNamedType) -> str:
    if isinstance(named, GraphQLEnumType):
        return "enum"
    if isinstance(named, GraphQLInputObjectType):
        return "input"
    return named.name if named.name in BAD else "String"


def _valid(type_: GraphQLInputType) -> Any:
    """Some value of the type, for the required arguments not under test."""
    named = get_named_type(type_)
    if isinstance(named, GraphQLEnumType):
        return next(iter(named.values))
    if isinstance(named, GraphQLInputObjectType):
        return {n: _valid(f.type) for n, f in named.fields.items() if isinstance(f.type, GraphQLNonNull)}
    return {"Int": 1, "Float": 1.0, "Boolean": True}.get(named.name, "X")


def _selection(field_type: Any) -> str:
    named = get_named_type(field_type)
    return "" if is_leaf_type(named) else "{ __typename }"


def generated() -> Iterator[tuple[str, dict[str, Any]]]:
    """(document, variables) pairs: one bad value of one argument (or input field) of one root query or mutation
    field. The other arguments get placeholders ("X" for ids), which name nothing in the plant: a mutation that
    gets past its input's validation is refused there, never acts on a lot."""
    schema = build_schema(introspection=True)._schema
    for operation, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        assert isinstance(root, GraphQLObjectType)
        yield from _root_fields(operation, root)


def _root_fields(operation: str, root: GraphQLObjectType) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, field in root.fields.items():
        if name.startswith("_"):
            continue
        for arg_name, arg in field.args.items():
            others = {n: a for n, a in field.args.items() if n != arg_name and isinstance(a.type, GraphQLNonNull)}
            for value in _bad_values(arg):
                variables = {"v": value, **{n: _valid(a.type) for n, a in others.items()}}
                declared = ", ".join(f"${n}: {a.type}" for n, a in {arg_name: arg, **others}.items())
                passed = ", ".join(f"{n}: ${n}" for n in others)
                call = f"{name}({arg_name}: $v{', ' if passed else ''}{passed})"
                declared = declared.replace(f"${arg_name}:", "$v:", 1)
                document = f"{operation}({declared}) {{ {call} {_selection(field.type)} }}"
                yield document, variables


def _bad_values(arg: GraphQLArgument) -> Iterator[Any]:
    named = get_named_type(arg.type)
    yield from BAD[_kind(named)]
    if isinstance(named, GraphQLInputObjectType):
        base = _valid(arg.type)
        for field_name, field in named.fields.items():
            inner = get_named_type(field.type)
            if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
                for value in BAD[_kind(inner)]:
                    yield {**base, field_name: value}


@pytest.fixture(scope="module")
def production(plant: Plant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    """A production gateway and a token of someone who may read everything (so resolvers run, not just guards)."""
    keys = tmp_path_factory.mktemp("idp")
    signer = DevSigner.load_or_create(keys / "idp-private.pem")
    (key := keys / "idp.json").write_text(json.dumps(signer.jwks()))
    auth = AuthSettings(key_file=key)
    token = signer.mint("everything", roles=("auditor", "qa_manager", "quality_engineer"), plants=("*",),
                        issuer=auth.issuer, audience=auth.audience)  # fmt: skip
    with start_gateway(plant, mode=Mode.PRODUCTION, auth=auth) as gateway:
        yield gateway, token


def _internal(response: httpx2.Response) -> list[Any]:
    """What in an answer is a server fault: a 5xx, a body that is not GraphQL, an error without a proper code."""
    if response.status_code >= 500 or not response.headers.get("content-type", "").startswith("application/json"):
        return [response.status_code, response.text[:200]]
    errors = response.json().get("errors") or []
    return [e for e in errors if e.get("extensions", {}).get("code") in (None, "INTERNAL_SERVER_ERROR")]


def test_generated_bad_arguments_are_the_callers_mistake(production: tuple[Gateway, str]) -> None:
    gateway, token = production
    cases = list(generated())
    assert len(cases) > 200, "the generator covers the schema"
    faults = []
    with httpx2.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for document, variables in cases:
            body = json.dumps({"query": document, "variables": variables})  # ASCII: "\ud800" stays escaped
            response = client.post("/graphql", content=body, headers={"content-type": "application/json"})
            if found := _internal(response):
                faults.append((document, {k: str(v)[:40] for k, v in variables.items()}, found))
    assert not faults, faults[:5]


def test_malformed_entity_representations_are_bad_user_input(production: tuple[Gateway, str]) -> None:
    gateway, token = production
    document = "query($r: [_Any!]!) { _entities(representations: $r) { __typename } }"
    headers = {"Authorization": f"Bearer {token}"}
    answers = [
        httpx2.post(f"{gateway.url}/graphql", json={"query": document, "variables": {"r": [r]}}, headers=headers)
        for r in REPRESENTATIONS
    ]
    assert [_internal(a) for a in answers] == [[]] * len(REPRESENTATIONS), [a.text[:200] for a in answers]
    codes = {e["extensions"]["code"] for a in answers for e in a.json()["errors"]}
    assert codes <= {"BAD_USER_INPUT", "NOT_FOUND"}, codes


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_a_body_that_is_no_graphql_request_is_400(production: tuple[Gateway, str], body: bytes) -> None:
    """POST (JSON and SSE) and GET (its `variables`) answer 400 BAD_REQUEST, in GraphQL's shape."""
    gateway, token = production
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    posted = httpx2.post(f"{gateway.url}/graphql", content=body, headers=headers)
    streamed = httpx2.post(f"{gateway.url}/graphql", content=body, headers={**headers, "accept": "text/event-stream"})
    params = {"query": "{ __typename }", "variables": body.decode(errors="replace")}
    got = httpx2.get(f"{gateway.url}/graphql", params=params, headers=headers)
    for response in (posted, streamed) if body.startswith(b'{"') else (posted, streamed, got):  # GET: an object
        assert response.status_code == 400, (response.request.method, response.status_code, response.text[:200])
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_suggestions_are_hidden_without_introspection(production: tuple[Gateway, str], gateway: Gateway) -> None:
    """With introspection off (production), "Did you mean 'lot' or 'lots'?" would reveal the schema all the same."""
    prod, token = production
    by_variable = "query($s: QualityStatus) { lots(filter: {qualityStatus: $s}) { totalCount } }"
    documents = [("{ lotz { id } }", {}), (by_variable, {"s": "RELEASE"}),
                 ("{ lots(filter: {qualityStatus: RELEASE}) { totalCount } }", {})]  # fmt: skip
    hidden = [prod.execute(d, v, token=token)["errors"][0] for d, v in documents]
    shown = [gateway.execute(d, v)["errors"][0] for d, v in documents]
    assert all("Did you mean" in e["message"] for e in shown), "development keeps them (introspection is on)"
    assert not [e["message"] for e in hidden if "Did you mean" in e["message"] or "RELEASED" in e["message"]]
    assert [e["extensions"]["code"] for e in hidden] == ["GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT",
                                                          "GRAPHQL_VALIDATION_FAILED"]  # fmt: skip


def test_oversize_ids_are_refused_before_any_upstream_call(production: tuple[Gateway, str], plant: Plant) -> None:
    gateway, token = production
    plant.reset_stats()
    answer = gateway.execute("query($id: ID!) { lot(id: $id) { id qualityStatus } }", {"id": HUGE}, token=token)
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["BAD_USER_INPUT"], answer["errors"]
    assert plant.served() == dict.fromkeys(plant.served(), 0)


def test_cursors_with_digits_int_cannot_read(production: tuple[Gateway, str]) -> None:
    """`"²".isdigit()` is true, yet `int("²")` fails: such a cursor is BAD_USER_INPUT naming `after`."""
    gateway, token = production
    answer = gateway.execute('{ auditLog(after: "²") { entries { seq } } }', token=token)
    assert [(e["extensions"]["code"], e["extensions"]["argument"]) for e in answer["errors"]] == [
        ("BAD_USER_INPUT", "after")
    ]
    subscription = 'subscription { qualityEvents(after: "²-0") { cursor } }'
    headers = {"Authorization": f"Bearer {token}", "accept": "text/event-stream"}
    with httpx2.stream("POST", f"{gateway.url}/graphql", json={"query": subscription}, headers=headers) as stream:
        streamed = stream.read().decode()
    assert '"code": "BAD_USER_INPUT"' in streamed.replace('":"', '": "'), streamed
    assert "INTERNAL_SERVER_ERROR" not in streamed
