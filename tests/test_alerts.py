"""The alert rules and the dashboard are tested, not just shipped: promtool checks the rules and runs their unit tests
(every alert firing and not firing, on synthetic series); each alert links its runbook section; Kubernetes and
compose get the same rules; a real Prometheus scraping a real gateway sees an alert go inactive -> pending ->
firing -> inactive when a source goes down and comes back (tests/monitoring.py); and every dashboard panel's
query returns series from a Prometheus scraping a gateway whose plant has been at work."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import yaml

from gateway.events.envelope import EventType
from gateway.events.settings import Trigger
from gateway.notifications.settings import NotificationSettings, TargetSettings
from gateway.reconcile.settings import ReconciliationSettings
from gateway.resilience import ResilienceSettings
from gateway.servers import free_port
from simulators import Dataset
from tests.conftest import Gateway, Plant, eventually, plant_of_its_own, start_gateway
from tests.events import SECRET
from tests.monitoring import RULES, Prometheus, alert_rules, watching
from tests.services import promtool
from tests.test_deploy import SERVICES
from tests.test_reconciliation import REPAIR, _hold_in_qms, _move_in_wms, _released_lot, reconcile
from tests.test_workflows import _change, _inspections, _operation, _produce, _record, _wired

ROOT = Path(__file__).resolve().parents[1]
UNIT_TESTS = ROOT / "tests" / "prometheus" / "alerts.test.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
K8S_RULES = ROOT / "deploy" / "k8s" / "prometheusrule.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "lotgraph.json"
ALERTS = [rule["alert"] for rule in alert_rules()]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rules() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    tested = _promtool("test", "rules", str(UNIT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_has_unit_tests_firing_and_not_firing(alert: str) -> None:
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    expected = [case["exp_alerts"] for case in cases if case["alertname"] == alert]
    assert any(expected), f"no unit test sees {alert} firing"
    assert [] in expected, f"no unit test sees {alert} not firing"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_severity_a_duration_and_its_runbook_section(rule: dict) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule.get("for"), "a condition must hold a while before anyone is paged"
    assert {"summary", "description"} <= rule["annotations"].keys()
    path, anchor = rule["annotations"]["runbook_url"].split("#")
    assert (ROOT / path) == RUNBOOKS
    headings = re.findall(r"^## (\S+)", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert anchor in [heading.lower() for heading in headings], f"docs/runbooks.md has no section {anchor}"
    assert rule["alert"] in headings


def test_kubernetes_carries_the_same_rules() -> None:
    """deploy/k8s/prometheusrule.yaml is generated from deploy/prometheus/alerts.yaml (`make k8s-rules`)."""
    (resource,) = [doc for doc in yaml.safe_load_all(K8S_RULES.read_text()) if doc]
    assert resource["kind"] == "PrometheusRule" and resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["spec"] == yaml.safe_load(RULES.read_text()), "run `make k8s-rules` after editing the rules"


def _ask_qms(gateway: Gateway, lots: list[str]) -> None:
    """Ask for lots' quality, which the gateway reads from QMS (each lot once: no cache hit spares the call)."""
    for lot in lots:
        gateway.execute("query($id: ID!) { lot(id: $id) { id qualityStatus } }", {"id": lot})


async def test_a_source_going_down_fires_its_alert_on_a_real_prometheus_until_it_returns(
    plant: Plant, dataset: Dataset
) -> None:
    breaker = ResilienceSettings(attempts=1, breaker_window=4, breaker_min_calls=4, breaker_open_seconds=0.5)
    lots = iter(sorted(dataset.lots))
    name = "LotgraphSourceUnavailable"
    states: list[str | None] = []

    def reaches(state: str) -> bool:
        states.append(prometheus.alert_state(name, source="qms"))
        return states[-1] == state

    with start_gateway(plant, sources={"qms": {"resilience": breaker}}) as gateway, watching(gateway) as prometheus:
        assert await eventually(lambda: prometheus.query('lotgraph_breaker_state{job="lotgraph",source="qms"} == 0'))
        assert await eventually(lambda: reaches("inactive"))
        plant.fault("qms", down=True)
        _ask_qms(gateway, [next(lots) for _ in range(4)])  # four failures in a window of four: the breaker opens
        assert await eventually(lambda: reaches("firing"))
        assert "pending" in states, f"firing only after its `for:` held: {states}"
        plant.clear_faults()

        def recovered() -> bool:
            _ask_qms(gateway, [next(lots)])  # a call lets the half-open breaker's probe through
            return reaches("inactive")

        assert await eventually(recovered)


async def test_a_lot_diverged_behind_lotgraphs_back_fires_the_divergence_alert_until_it_is_repaired() -> None:
    """Someone changes a released lot in one system itself (no webhook tells lotgraph): a quality engineer holds it
    in the QMS, or a clerk blocks it in the WMS. The sweep finds the systems disagreeing: LotgraphLotsDivergent goes
    from inactive through pending to firing, and back to inactive once `repairLot` has brought WMS and ERP in line
    with QMS (its completion re-checks the lot). The plant and kind are ones the seeded divergences leave at zero,
    so the alert is the test's own."""
    name, states = "LotgraphLotsDivergent", []
    fast = {f"REQUESTS_PER_SECOND__{source}": "100" for source in ("ERP", "QMS", "WMS")}
    changes = {
        "AVAILABLE_WHILE_BLOCKED": _hold_in_qms,
        "BLOCKED_WHILE_AVAILABLE": lambda plant, lot: _move_in_wms(plant, lot, "BLOCKED"),
    }
    with (
        plant_of_its_own(seed=16) as (plant, _),
        start_gateway(
            plant,
            reconciliation=ReconciliationSettings(plants=["P300"], interval_seconds=3600),
            operation_retry_seconds=0.5,
        ) as gateway,  # fmt: skip
        watching(gateway) as prometheus,
    ):
        store = gateway.settings.resolved_store_url
        assert reconcile(plant, store, **fast).returncode == 0  # every plant, as seeded
        by = "max by (plant, kind) (sum without (age) (lotgraph_divergent_lots))"
        counted = await eventually(lambda: {(s["metric"]["plant"], s["metric"]["kind"]): float(s["value"][1])
                                            for s in prometheus.query(by)})  # fmt: skip
        home, kind = next((p, k) for (p, k), n in sorted(counted.items()) if n == 0 and k in changes)

        def reaches(state: str) -> bool:
            states.append(prometheus.alert_state(name, plant=home, kind=kind))
            return states[-1] == state

        assert await eventually(lambda: reaches("inactive"))
        lot = _released_lot(plant, in_plant=home)
        changes[kind](plant, lot)
        assert reconcile(plant, store, home, **fast).returncode == 0
        assert await eventually(lambda: reaches("firing"))
        assert "pending" in states, f"firing only after its `for:` held: {states}"
        repaired = gateway.data(REPAIR, {"lot": lot, "key": "alert-e2e"}, token=gateway.token("quality_engineer"))
        assert repaired["repairLot"]["state"] == "COMPLETED", repaired
        assert await eventually(lambda: reaches("inactive"))


def test_the_compose_prometheus_loads_the_rules_and_passes_promtool() -> None:
    """deploy/prometheus/prometheus.yaml as the compose service mounts it: its rule files are the mounted rules."""
    mounts = {}
    for volume in SERVICES["prometheus"]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = ROOT / "deploy" / source
    config_file = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_file.read_text())
    assert [mounts[path] for path in config["rule_files"]] == [RULES]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["lotgraph"]
    with tempfile.TemporaryDirectory() as work:
        config["rule_files"] = [str(RULES)]
        (local := Path(work) / "prometheus.yml").write_text(yaml.safe_dump(config))
        checked = _promtool("check", "config", str(local))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_provisions_the_dashboard_against_its_prometheus() -> None:
    grafana = SERVICES["grafana"]
    mounts = {v.split(":")[1]: ROOT / "deploy" / v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in SERVICES
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "lotgraph.yaml").read_text())["providers"]
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent
    assert {target["datasource"]["uid"] for _, target in _panel_targets()} == {datasource["uid"]}
    assert "${GRAFANA_ADMIN_PASSWORD:?" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]


# --- the dashboard ---------------------------------------------------------------------------------------------


def _panel_targets() -> list[tuple[str, dict]]:
    """(panel title, target) for every query of every panel, rows' nested panels included."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    panels += [nested for panel in panels for nested in panel.get("panels", [])]
    return [(panel["title"], target) for panel in panels for target in panel.get("targets", [])]


def test_the_dashboard_has_a_row_per_concern() -> None:
    rows = [panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] == "row"]
    concerns = ("Divergence", "Workflows", "Exceptions", "Sources", "Events", "GraphQL requests")
    assert [concern for concern in concerns if not any(row.startswith(concern) for row in rows)] == []


def _unsigned_webhook(gateway: Gateway) -> int:
    return httpx2.post(f"{gateway.url}/webhooks/qms", content=b"{}").status_code


@pytest.fixture(scope="module")
async def plant_at_work() -> AsyncIterator[Prometheus]:
    """Prometheus scraping a gateway whose plant has done what the panels show: lots received (one still awaiting
    inspection), one released, one regulated lot waiting for a qualified person, a QMS hold carried to WMS and ERP,
    every plant swept for divergence, a webhook refused; yielded once Prometheus has scraped the refusal twice
    (everything before it is in, and a rate over it has two samples)."""
    supervisors = TargetSettings(url=f"http://127.0.0.1:{free_port()}/pages", secret=SECRET,
                                 events=[Trigger(type=EventType.INSPECTION_COMPLETED, passed=False)])  # fmt: skip
    notifications = NotificationSettings(targets={"supervisors": supervisors})
    with (
        plant_of_its_own(seed=14) as (plant, shift),
        _wired(plant, notifications=notifications) as gateway,
        watching(gateway) as prometheus,
    ):
        released, regulated = _produce(plant, shift), _produce(plant, shift, regulated=True)
        awaiting = _produce(plant, shift)
        for done in (released, regulated, awaiting):
            await eventually(lambda lot=done["lot_id"]: _operation(gateway, "receiveProduction", lot))
        for done in (released, regulated):
            (inspection,) = _inspections(plant, done["lot_id"])
            _record(plant, inspection, within=True)
        await eventually(lambda: _operation(gateway, "releaseInspectedLot", released["lot_id"]))
        hold = {"lot_id": released["lot_id"], "reason_code": "QH02", "reason": "complaint", "placed_by": "qe-mia"}
        assert _change(f"{plant.url('qms')}/api/v1/holds", json=hold).status_code == 201
        await eventually(lambda: _operation(gateway, "carryQmsHold", released["lot_id"]))
        fast = {f"REQUESTS_PER_SECOND__{source}": "100" for source in ("ERP", "QMS", "WMS")}
        assert reconcile(plant, gateway.settings.resolved_store_url, **fast).returncode == 0  # the divergence rows
        assert _unsigned_webhook(gateway) == 401
        await eventually(lambda: prometheus.query("count_over_time(lotgraph_events_rejected_total[5m]) >= 2"))
        yield prometheus


@pytest.mark.parametrize("expr", [pytest.param(target["expr"], id=title) for title, target in _panel_targets()])
def test_every_dashboard_panel_returns_series(plant_at_work: Prometheus, expr: str) -> None:
    assert plant_at_work.query(expr)
