"""Persisted queries for everyone; registered operations only for clients in allowlist mode; per-client rate limits."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from gateway.auth import AuthSettings, DevSigner
from gateway.limits import LimitSettings
from gateway.settings import Mode
from gateway.trusted import TrustedDocuments, TrustedDocumentSettings, digest
from tests.conftest import Plant, start_gateway
from tests.events import WsClient, error_codes, sse_subscribe, until_subscriptions

REGISTERED = "query Contracts { contracts { name } }"
OTHER = "{ contracts { name status } }"


def _post(url: str, body: dict, token: str | None = None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.post(f"{url}/graphql", json=body, headers=headers)


def _persisted(document_hash: str) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": document_hash}}


def test_automatic_persisted_queries(plant: Plant) -> None:
    with start_gateway(plant) as gateway:
        unknown = _post(gateway.url, {"extensions": _persisted(digest(OTHER))})
        registered = _post(gateway.url, {"query": OTHER, "extensions": _persisted(digest(OTHER))})
        by_hash = _post(gateway.url, {"extensions": _persisted(digest(OTHER))})
        forged = _post(gateway.url, {"query": REGISTERED, "extensions": _persisted(digest(OTHER))})
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert registered.json()["data"]["contracts"] and by_hash.json() == registered.json()
    assert forged.status_code == 403
    assert forged.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_HASH_MISMATCH"


def test_allowlisted_clients_run_registered_operations_only(plant: Plant, tmp_path: Path) -> None:
    manifest = tmp_path / "operations.json"
    manifest.write_text(json.dumps({digest(REGISTERED): REGISTERED}))
    trusted = TrustedDocumentSettings(manifest=manifest, enforce_for_roles=("supplier",))
    with start_gateway(plant, trusted_documents=trusted) as gateway:
        supplier = gateway.token("supplier", plants=(), supplier="100001")
        by_hash = _post(gateway.url, {"extensions": _persisted(digest(REGISTERED))}, supplier)
        by_text = _post(gateway.url, {"query": REGISTERED}, supplier)
        refused = _post(gateway.url, {"query": OTHER}, supplier)
        internal = _post(gateway.url, {"query": OTHER}, gateway.token("quality_engineer"))
    assert by_hash.json()["data"]["contracts"] and by_text.json()["data"]["contracts"]
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["extensions"]["code"] == "OPERATION_NOT_ALLOWED"
    assert internal.json()["data"]["contracts"], "allowlist mode applies to the configured clients only"


def test_only_registered_operation_names_label_request_metrics(plant: Plant, tmp_path: Path) -> None:
    """Clients name their operations: three random names must not add series, a registered document's name may."""
    manifest = tmp_path / "operations.json"
    manifest.write_text(json.dumps({digest(REGISTERED): REGISTERED}))
    with start_gateway(plant, trusted_documents=TrustedDocumentSettings(manifest=manifest)) as gateway:
        token = gateway.token("quality_engineer")
        for name in ("Xq1", "Yq2", "Zq3"):
            assert _post(gateway.url, {"query": f"query {name} {{ contracts {{ name }} }}"}, token).status_code == 200
        assert _post(gateway.url, {"query": REGISTERED}, token).status_code == 200
        assert _post(gateway.url, {"query": OTHER}, token).status_code == 200
        metrics = httpx2.get(f"{gateway.url}/metrics").text
    requests = [line for line in metrics.splitlines() if line.startswith("lotgraph_graphql_requests_total{")]
    assert {line.split('operation="')[1].split('"')[0] for line in requests} == {
        "Contracts", "unregistered", "anonymous",
    }  # fmt: skip
    assert 'operation="unregistered",outcome="ok"} 3.0' in metrics


def test_a_manifest_document_that_is_not_graphql_is_refused_at_start(tmp_path: Path) -> None:
    broken = "query Broken { contracts {"
    (manifest := tmp_path / "operations.json").write_text(json.dumps({digest(broken): broken}))
    with pytest.raises(ValueError, match="is not GraphQL"):
        TrustedDocuments(TrustedDocumentSettings(manifest=manifest))


def test_each_client_has_its_own_rate_limit(plant: Plant) -> None:
    with start_gateway(plant, limits=LimitSettings(client_rps=0.5, client_burst=2)) as gateway:
        greedy, patient = gateway.token("portal_reader", sub="greedy"), gateway.token("portal_reader", sub="patient")
        answers = [_post(gateway.url, {"query": OTHER}, greedy) for _ in range(3)]
        other = _post(gateway.url, {"query": OTHER}, patient)
        metrics = httpx2.get(f"{gateway.url}/metrics").text
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "lotgraph_rate_limit_rejections_total 1.0" in metrics
    assert answers[2].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(answers[2].headers["retry-after"]) >= 1
    assert other.status_code == 200


REGISTERED_EVENTS = "subscription Events { qualityEvents { id type } }"
OTHER_EVENTS = "subscription { qualityEvents { id } }"


async def test_every_transport_passes_the_allowlist(plant: Plant, tmp_path: Path) -> None:
    """In production, a supplier in allowlist mode is refused an unregistered query or subscription with
    OPERATION_NOT_ALLOWED whichever transport carries it (POST, GET, SSE, graphql-transport-ws), and runs the
    registered ones over each."""
    signer = DevSigner.load_or_create(tmp_path / "idp-private.pem")
    (key := tmp_path / "idp.json").write_text(json.dumps(signer.jwks()))
    auth = AuthSettings(key_file=key)
    token = signer.mint("supplier-app", roles=("supplier",), supplier_id="100001", issuer=auth.issuer,
                        audience=auth.audience)  # fmt: skip
    manifest = tmp_path / "operations.json"
    manifest.write_text(json.dumps({digest(d): d for d in (REGISTERED, REGISTERED_EVENTS)}))
    trusted = TrustedDocumentSettings(manifest=manifest, enforce_for_roles=("supplier",))
    with start_gateway(plant, mode=Mode.PRODUCTION, auth=auth, trusted_documents=trusted) as gateway:
        async with httpx2.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            posted = await client.post(f"{gateway.url}/graphql", json={"query": OTHER})
            got = await client.get(f"{gateway.url}/graphql", params={"query": OTHER})
            async with sse_subscribe(client, gateway.url, OTHER_EVENTS, token=token) as sse:
                streamed = await sse.next()
            async with WsClient.connect(gateway.url, token) as ws:
                await ws.acknowledged()
                for sub_id, document in (("query", OTHER), ("events", OTHER_EVENTS), ("ok", REGISTERED)):
                    await ws.subscribe(sub_id, document)
                refused = [await ws.message("query"), await ws.message("events")]
                registered = await ws.event("ok")
                await ws.subscribe("live", REGISTERED_EVENTS)
                await until_subscriptions(client, gateway.url, 1)
                await ws.stop("live")
            await until_subscriptions(client, gateway.url, 0)
    assert (posted.status_code, got.status_code) == (403, 403)
    assert [r.json()["errors"][0]["extensions"]["code"] for r in (posted, got)] == ["OPERATION_NOT_ALLOWED"] * 2
    assert [e["extensions"]["code"] for e in streamed[1]["errors"]] == ["OPERATION_NOT_ALLOWED"]
    assert [error_codes(message) for message in refused] == [["OPERATION_NOT_ALLOWED"]] * 2, refused
    assert registered, "a registered query runs over the WebSocket"
