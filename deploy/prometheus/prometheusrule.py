"""Print deploy/prometheus/alerts.yaml as a Kubernetes PrometheusRule (`make k8s-rules` writes it to
deploy/k8s/prometheusrule.yaml): the rules have one source, and tests/test_alerts.py fails while the copy differs."""

import sys
from pathlib import Path

import yaml

HEADER = """\
# Generated from deploy/prometheus/alerts.yaml by `make k8s-rules`: edit that file, then regenerate this one.
# The Prometheus Operator loads it when its ruleSelector matches these labels (kube-prometheus-stack selects
# `release: <its release name>`: add that label here, or widen the selector).
"""


def prometheus_rule(rules: Path) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "lotgraph",
            "namespace": "lotgraph",
            "labels": {"app.kubernetes.io/name": "lotgraph", "app.kubernetes.io/part-of": "lotgraph"},
        },
        "spec": yaml.safe_load(rules.read_text()),
    }


class Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, as they are written in alerts.yaml."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


Dumper.add_representer(str, _text)


if __name__ == "__main__":
    rules = Path(__file__).with_name("alerts.yaml")
    sys.stdout.write(HEADER + yaml.dump(prometheus_rule(rules), Dumper=Dumper, sort_keys=False, width=120))
