"""A real Prometheus watching a test gateway with the project's alert rules, and its HTTP API as tests read it.

`watching(gateway)` starts Prometheus (tests/services.py: Debian's package, installed when missing) scraping the
gateway's `/metrics` every second as job `lotgraph` and evaluating deploy/prometheus/alerts.yaml every second.
Every `for:` is shortened to `hold_for` so an alert goes inactive -> pending -> firing in seconds: the rules'
expressions and labels are the shipped ones, their durations are promtool's to test
(tests/prometheus/alerts.test.yaml). An end-to-end alert test is then a few lines:

    with start_gateway(plant) as gateway, watching(gateway) as prometheus:
        await eventually(lambda: prometheus.alert_state("LotgraphSourceUnavailable") == "inactive")
        ...cause the condition...
        await eventually(lambda: prometheus.alert_state("LotgraphSourceUnavailable", source="qms") == "firing")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import yaml

from tests.conftest import Gateway
from tests.services import prometheus

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
JOB = "lotgraph"  # the job name deploy/prometheus/prometheus.yaml and the Kubernetes PodMonitor give the gateway


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of deploy/prometheus/alerts.yaml, across its groups."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def shortened(hold_for: str) -> str:
    """The rules file with every `for:` set to `hold_for`."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        if "for" in rule:
            rule["for"] = hold_for
    return yaml.safe_dump({"groups": groups}, sort_keys=False)


@dataclass
class Prometheus:
    url: str

    def api(self, path: str, **params: str) -> Any:
        """`GET /api/v1/{path}`'s data; an error answer (a query that does not parse) fails the test."""
        answer = httpx2.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series."""
        return self.api("query", query=expr)["result"]

    def alerting_rule(self, name: str) -> dict[str, Any]:
        (rule,) = [r for g in self.api("rules", type="alert")["groups"] for r in g["rules"] if r["name"] == name]
        return rule

    def alert_state(self, name: str, **labels: str) -> str | None:
        """`inactive`, `pending` or `firing` for the alert with these labels (inactive when none has them), None
        until the rule has been evaluated once."""
        rule = self.alerting_rule(name)
        if rule["lastEvaluation"].startswith("0001-"):
            return None
        matching = [a for a in rule["alerts"] if labels.items() <= a["labels"].items()]
        return matching[0]["state"] if matching else "inactive"


@contextmanager
def watching(gateway: Gateway, hold_for: str = "2s") -> Iterator[Prometheus]:
    """Prometheus scraping `gateway` with the project's rules (every `for:` set to `hold_for`); see the module."""
    target = urlsplit(gateway.url).netloc

    def config(work: Path) -> str:
        (work / "alerts.yaml").write_text(shortened(hold_for), encoding="utf-8")
        return yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(work / "alerts.yaml")],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        })  # fmt: skip

    with prometheus(config) as url:
        yield Prometheus(url)
