"""Static checks of the container and deployment files (parsed: CI has no Docker or cluster). That the gateway
they describe starts is tests/test_deploy_run.py."""

import json
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.settings import Mode, Settings, names_a_setting

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def load_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines if line and not line.startswith("#")
    ]


def instructions(name: str) -> list[str]:
    return [args for instr, args in dockerfile() if instr == name]


def image_environment() -> dict[str, str]:
    """The runtime stage's ENV (the last FROM on): what every container of the image starts with."""
    stages = [i for i, (instr, _) in enumerate(dockerfile()) if instr == "FROM"]
    env: dict[str, str] = {}
    for instr, args in dockerfile()[stages[-1] :]:
        if instr == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def gateway_port() -> int:
    """The port the image's gateway serves on (LOTGRAPH_PORT; `run` takes it from there, not from a flag)."""
    assert "--port" not in json.loads(instructions("CMD")[-1]), "a --port flag would win over LOTGRAPH_PORT"
    return int(image_environment()["LOTGRAPH_PORT"])


COMPOSE = load_docs(DEPLOY / "compose.yaml")[0]
SERVICES = COMPOSE["services"]
K8S_FILES = sorted(p.name for p in K8S.glob("*.yaml"))
K8S_DOCS = [doc for name in K8S_FILES for doc in load_docs(K8S / name)]
WORKLOADS = [d for d in K8S_DOCS if d.get("kind") in {"Deployment", "StatefulSet"}]


def k8s(kind: str, name: str) -> dict:
    (doc,) = [d for d in K8S_DOCS if d.get("kind") == kind and d["metadata"]["name"] == name]
    return doc


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict | None, labels: dict) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def selected_workload(selector: dict) -> dict:
    matches = [w for w in WORKLOADS if selects(selector, pod_labels(w))]
    assert len(matches) == 1, f"selector {selector} matches {len(matches)} workloads"
    return matches[0]


def container_port(workload: dict, port: int | str) -> int:
    """Resolve a numeric or named port against the workload's containers."""
    ports = [p for c in workload["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
    for p in ports:
        if port in (p["containerPort"], p.get("name")):
            return p["containerPort"]
    raise AssertionError(f"{workload['metadata']['name']} has no container port {port!r}")


def environment(service: dict) -> dict:
    env = service.get("environment", {})
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else env


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_yaml_file_parses_to_mappings(path):
    docs = load_docs(path)
    assert docs and all(isinstance(doc, dict) for doc in docs)


# --- Dockerfile -------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_ships_only_the_venv():
    stages = instructions("FROM")
    assert len(stages) >= 2 and all(s.startswith("python:3.11-slim") for s in stages)
    assert any(c.startswith("--from=") and "/opt/venv" in c for c in instructions("COPY"))
    assert any("pip install ." in r for r in instructions("RUN"))


def test_dockerfile_runs_lotgraph_as_non_root_with_healthcheck():
    user = instructions("USER")[-1].split(":")[0]
    assert user not in {"root", "0"} and user.isdigit()
    assert "lotgraph" in json.loads(instructions("ENTRYPOINT")[-1])
    assert [int(p.split("/")[0]) for p in " ".join(instructions("EXPOSE")).split()] == [gateway_port()]
    assert image_environment()["LOTGRAPH_MODE"] == "production"


def healthcheck_command() -> list[str]:
    """The exec form of the image's HEALTHCHECK (`CMD [...]` after the options)."""
    (healthcheck,) = instructions("HEALTHCHECK")
    return json.loads(healthcheck.split(" CMD ", 1)[1])


def test_dockerfile_healthcheck_follows_the_configured_port():
    command = healthcheck_command()
    assert "/healthz" in command[-1] and "LOTGRAPH_PORT" in command[-1], "a fixed port breaks with LOTGRAPH_PORT"
    assert ":8000/" not in command[-1]


# --- docker compose ---------------------------------------------------------------------------------------


def test_compose_services_and_healthchecks():
    assert {"gateway", "postgres", "redis", "nginx"} <= SERVICES.keys()
    gateway = SERVICES["gateway"]
    assert gateway["deploy"]["replicas"] >= 2
    assert "ports" not in gateway, "replicas cannot share a host port; publish through nginx"
    assert "pg_isready" in str(SERVICES["postgres"]["healthcheck"]["test"])
    assert "redis-cli ping" in " ".join(SERVICES["redis"]["healthcheck"]["test"])
    for dependency in ("postgres", "redis"):
        assert gateway["depends_on"][dependency]["condition"] == "service_healthy"
    # No `test` of its own: the image's HEALTHCHECK, which follows LOTGRAPH_PORT, with compose's timing.
    assert "test" not in gateway["healthcheck"]
    assert SERVICES["nginx"]["depends_on"]["gateway"]["condition"] == "service_healthy"


def test_compose_gateway_points_at_postgres_and_redis():
    env = environment(SERVICES["gateway"])
    store, redis = urlsplit(env["LOTGRAPH_STORE_URL"]), urlsplit(env["LOTGRAPH_REDIS_URL"])
    assert store.scheme.startswith("postgresql") and (store.hostname, store.port) == ("postgres", 5432)
    assert redis.scheme == "redis" and (redis.hostname, redis.port) == ("redis", 6379)
    for source in ("ERP", "QMS", "WMS", "MES"):
        assert env[f"LOTGRAPH_SOURCES__{source}__URL"]


COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*(?:\{\})?)|:\?([^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` with `variables` as the operator's shell;
    an unset required variable raises with its message, as `docker compose up` refuses to start."""

    def one(match: re.Match[str]) -> str:
        name, default, required = match.groups()
        if variables.get(name):
            return variables[name]
        if required is not None:
            raise LookupError(f"required variable {name} is missing a value: {required}")
        return default or ""

    return COMPOSE_VARIABLE.sub(one, value)


def compose_variables() -> set[str]:
    return {m.group(1) for m in COMPOSE_VARIABLE.finditer((DEPLOY / "compose.yaml").read_text())}


def required_compose_variables() -> set[str]:
    return {m.group(1) for m in COMPOSE_VARIABLE.finditer((DEPLOY / "compose.yaml").read_text()) if m.group(3)}


# What the compose file's header tells an operator to set, and nothing else.
OPERATOR = {
    "POSTGRES_PASSWORD": "example-password",
    "LOTGRAPH_AUTH__JWKS_URL": "https://idp.example.com/.well-known/jwks.json",
    "LOTGRAPH_AUTH__ISSUER": "https://idp.example.com",
    "GRAFANA_ADMIN_PASSWORD": "example-grafana-password",
}
NOT_SETTINGS = {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}  # the database's and Grafana's, not the gateway's


def _interpolated(value: str) -> str:
    return interpolate(value, OPERATOR)


def test_compose_and_kubernetes_environments_are_settings_the_gateway_accepts(monkeypatch: pytest.MonkeyPatch):
    """Every LOTGRAPH_* variable the manifests set must parse: a misspelt or mistyped one stops every replica."""
    configmap = next(d for d in K8S_DOCS if d.get("kind") == "ConfigMap")["data"]
    secret = next(d for d in K8S_DOCS if d.get("kind") == "Secret")["stringData"]
    for env in (
        {k: _interpolated(str(v)) for k, v in environment(SERVICES["gateway"]).items()},
        {**configmap, **{k: v for k, v in secret.items() if k.startswith("LOTGRAPH_")}},
    ):
        for name in [n for n in os.environ if n.startswith("LOTGRAPH_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        settings = Settings()
        assert settings.mode is Mode.PRODUCTION and settings.redis_url
        assert settings.auth.jwks_url or settings.auth.key_file, "a production gateway needs its IdP's keys"


def _lotgraph_names(text: str) -> set[str]:
    return set(re.findall(r"\bLOTGRAPH_[A-Z0-9_]*[A-Z0-9]\b", text))


DEPLOY_FILES = [ROOT / "Dockerfile", *sorted(p for p in DEPLOY.rglob("*") if p.is_file())]


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
def test_every_lotgraph_variable_the_deploy_files_name_is_a_setting(path: Path):
    """In values, compose's `${...}` and comments alike: a name that looks like a setting but is none (the old
    LOTGRAPH_ERP_URL) is silently ignored by the gateway and misleads whoever reads the file."""
    names = _lotgraph_names(path.read_text())
    assert [name for name in sorted(names) if not names_a_setting(name)] == []


def test_compose_requires_the_database_password_and_the_identity_provider():
    assert required_compose_variables() == OPERATOR.keys()
    header = (DEPLOY / "compose.yaml").read_text().split("\nname:", 1)[0]
    assert all(f"export {name}=" in header for name in OPERATOR), "the header says what to set"
    env = environment(SERVICES["gateway"])
    with pytest.raises(LookupError, match="LOTGRAPH_AUTH__JWKS_URL"):
        interpolate(env["LOTGRAPH_AUTH__JWKS_URL"], {})
    # Every compose variable that looks like a setting sets that very setting (one name per knob).
    for name in compose_variables() - NOT_SETTINGS:
        assert names_a_setting(name) and f"${{{name}" in str(env.get(name, "")), name


def test_kubernetes_configmap_names_the_identity_provider():
    configmap = k8s("ConfigMap", "lotgraph-config")["data"]
    assert configmap["LOTGRAPH_AUTH__JWKS_URL"].startswith("https://")
    assert configmap["LOTGRAPH_AUTH__ISSUER"]


def test_compose_nginx_proxies_websockets_to_gateway():
    directives = [line.split("#")[0].strip() for line in (DEPLOY / "nginx.conf").read_text().splitlines()]
    assert any(d.startswith(f"server gateway:{gateway_port()}") for d in directives)
    assert "proxy_set_header Upgrade $http_upgrade;" in directives
    assert "proxy_set_header Connection $connection_upgrade;" in directives
    nginx = SERVICES["nginx"]
    assert nginx["image"].startswith("nginx:") and "8080:8080" in nginx["ports"]
    assert any(v.startswith("./nginx.conf:") for v in nginx["volumes"])


# --- Kubernetes -------------------------------------------------------------------------------------------


def doc_id(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


@pytest.mark.parametrize("doc", K8S_DOCS, ids=doc_id)
def test_k8s_docs_are_identified(doc):
    assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name")


def test_kustomization_lists_exactly_the_manifests():
    kustomization = load_docs(K8S / "kustomization.yaml")[0]
    assert sorted(kustomization["resources"]) == [f for f in K8S_FILES if f != "kustomization.yaml"]


def test_gateway_deployment_is_hardened_and_probed():
    deployment = k8s("Deployment", "gateway")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert security["runAsNonRoot"] is True and security.get("runAsUser", 1) != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = container[probe]["httpGet"]
        assert http["path"] == path
        assert container_port(deployment, http["port"]) == gateway_port()
    service = k8s("Service", "gateway")
    assert selected_workload(service["spec"]["selector"]) is deployment
    for port in service["spec"]["ports"]:
        assert container_port(deployment, port["targetPort"]) == gateway_port()


def test_selectors_match_pod_labels():
    for workload in WORKLOADS:
        assert selects(workload["spec"]["selector"]["matchLabels"], pod_labels(workload))
    for doc in K8S_DOCS:
        if doc["kind"] == "Service":
            workload = selected_workload(doc["spec"]["selector"])
            for port in doc["spec"]["ports"]:
                container_port(workload, port["targetPort"])
        elif doc["kind"] == "PodDisruptionBudget":
            selected_workload(doc["spec"]["selector"]["matchLabels"])
        elif doc["kind"] == "PodMonitor":
            workload = selected_workload(doc["spec"]["selector"]["matchLabels"])
            for endpoint in doc["spec"]["podMetricsEndpoints"]:
                container_port(workload, endpoint["port"])
        elif doc["kind"] == "HorizontalPodAutoscaler":
            target = doc["spec"]["scaleTargetRef"]
            k8s(target["kind"], target["name"])


def ingress_rules(workload: dict) -> list[dict]:
    labels = pod_labels(workload)
    policies = [d for d in K8S_DOCS if d["kind"] == "NetworkPolicy"]
    policies = [p for p in policies if selects(p["spec"]["podSelector"].get("matchLabels"), labels)]
    assert policies, f"no NetworkPolicy selects {workload['metadata']['name']}"
    return [rule for policy in policies for rule in policy["spec"]["ingress"]]


def test_network_policies_admit_only_the_gateway_to_the_backends():
    gateway = pod_labels(k8s("Deployment", "gateway"))
    for rule in ingress_rules(k8s("Deployment", "gateway")):
        assert [p["port"] for p in rule["ports"]] == [gateway_port()]
    for backend, port in ((k8s("StatefulSet", "postgres"), 5432), (k8s("Deployment", "redis"), 6379)):
        for rule in ingress_rules(backend):
            assert [p["port"] for p in rule["ports"]] == [port]
            assert rule["from"], "a rule without `from` admits every pod"
            assert all(selects(peer["podSelector"]["matchLabels"], gateway) for peer in rule["from"])


def test_prometheus_scrapes_every_gateway_pod_as_the_job_the_alerts_expect():
    """The PodMonitor's job label comes from a pod label: its value must be the `job` of LotgraphGatewayDown."""
    deployment = k8s("Deployment", "gateway")
    monitor = k8s("PodMonitor", "gateway")
    assert selected_workload(monitor["spec"]["selector"]["matchLabels"]) is deployment
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert container_port(deployment, endpoint["port"]) == gateway_port() and endpoint["path"] == "/metrics"
    job = pod_labels(deployment)[monitor["spec"]["jobLabel"]]
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    expressions = [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    assert f'up{{job="{job}"}}' in " ".join(expressions)
