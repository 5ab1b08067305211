"""Configuration: secure defaults, explicit development conveniences, env and YAML sources."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from graphql import GraphQLError

from gateway import correlation
from gateway.settings import Mode, Settings
from schema import build_schema
from tests.conftest import Plant, start_gateway

INTROSPECTION = "{ __schema { queryType { name } } }"


def test_production_mode_hides_graphiql_and_introspection(plant: Plant) -> None:
    with start_gateway(plant, mode=Mode.PRODUCTION) as gateway:
        page = httpx2.get(f"{gateway.url}/graphql", headers={"accept": "text/html"})
        result = gateway.execute(INTROSPECTION)
    assert "graphiql" not in page.text.lower()
    assert result["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_production_mode_can_enable_introspection_explicitly(plant: Plant) -> None:
    with start_gateway(plant, mode=Mode.PRODUCTION, introspection=True) as gateway:
        assert gateway.data(INTROSPECTION)["__schema"]["queryType"]["name"] == "Query"


def test_default_mode_is_production() -> None:
    settings = Settings()
    assert settings.mode is Mode.PRODUCTION
    assert not settings.graphiql_enabled and not settings.introspection_enabled


def test_environment_changes_one_nested_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTGRAPH_SOURCES__WMS__VERSION", "1")
    settings = Settings()
    assert settings.sources.wms.version == 1
    assert str(settings.sources.wms.url) == "http://127.0.0.1:8003/", "the rest of the source keeps its default"


def test_yaml_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "lotgraph.yaml"
    config.write_text("mode: development\nsources:\n  erp:\n    url: http://erp.plant.local:8443\n")
    monkeypatch.setenv("LOTGRAPH_CONFIG", str(config))
    monkeypatch.setenv("LOTGRAPH_MODE", "production")
    settings = Settings()
    assert str(settings.sources.erp.url) == "http://erp.plant.local:8443/"
    assert settings.mode is Mode.PRODUCTION


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="not_a_setting"):
        Settings(not_a_setting=1)


def test_production_masks_upstream_internals(plant: Plant, tmp_path: Path) -> None:
    with start_gateway(plant, mode=Mode.PRODUCTION) as gateway:
        plant.fault("qms", down=True)
        result = gateway.execute('{ lot(id: "B2600010") { id qualityStatus } }')
    error = result["errors"][0]
    assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE" and error["extensions"]["source"] == "qms"
    assert "/api/v1" not in error["message"] and "answered 503" not in error["message"]
    assert "correlation id" in error["message"]


def test_production_masks_unexpected_errors_for_every_transport() -> None:
    """An error that is not a `GatewayError` (a bug) is masked where every transport's errors pass, the schema's
    `process_errors`: only the correlation id that finds its traceback in the log, in message and extensions."""
    schema = build_schema(introspection=False, mask_errors=True)
    token = correlation.current.set("c0ffee")
    try:
        error = GraphQLError("KeyError: 'P100' in /srv/lotgraph/resolvers", path=["lot"], original_error=KeyError("x"))
        schema.process_errors([error])
    finally:
        correlation.current.reset(token)
    assert error.formatted["message"] == "Internal error; quote correlation id c0ffee to find it in the logs."
    assert error.formatted["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "correlationId": "c0ffee"}


def test_names_a_setting_tells_settings_from_lookalikes() -> None:
    from gateway.settings import names_a_setting, warn_about_unknown_variables

    for name in ("LOTGRAPH_SOURCES__ERP__URL", "LOTGRAPH_AUTH__JWKS_URL", "LOTGRAPH_SUBGRAPHS__LIMS__URL",
                 "LOTGRAPH_EVENTS__MQTT__URL", "LOTGRAPH_CONFIG", "lotgraph_port"):  # fmt: skip
        assert names_a_setting(name), name
    for name in ("LOTGRAPH_ERP_URL", "LOTGRAPH_AUTH__JWKS", "LOTGRAPH_PORT__X", "LOTGRAPH_", "PATH"):
        assert not names_a_setting(name), name
    assert warn_about_unknown_variables({"LOTGRAPH_ERP_URL": "x", "LOTGRAPH_PORT": "1", "HOME": "/"}) == [
        "LOTGRAPH_ERP_URL"
    ]
