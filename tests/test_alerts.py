"""The alert rules are tested, not just shipped: promtool checks them and runs their unit tests (every alert firing
and not firing, on synthetic series); each links its runbook section; Kubernetes gets the same rules; and a real
Prometheus scraping a real gateway sees an alert go inactive -> pending -> firing -> inactive when a source goes
down and comes back (tests/monitoring.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.resilience import ResilienceSettings
from simulators import Dataset
from tests.conftest import Gateway, Plant, eventually, start_gateway
from tests.monitoring import RULES, alert_rules, watching
from tests.services import promtool

ROOT = Path(__file__).resolve().parents[1]
UNIT_TESTS = ROOT / "tests" / "prometheus" / "alerts.test.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
K8S_RULES = ROOT / "deploy" / "k8s" / "prometheusrule.yaml"
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
