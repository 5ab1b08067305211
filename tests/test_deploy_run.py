"""The shipped deploy files start a gateway: `lotgraph run` (the image's ENTRYPOINT and CMD) with exactly the
environment the image, the compose `gateway` service or the Kubernetes ConfigMap and example Secret give it,
production mode included, reaches `/readyz` 200; the image's HEALTHCHECK command follows LOTGRAPH_PORT.

Docker and a cluster are not available here, so the manifests are parsed and their environment handed to
`lotgraph run` on loopback. What differs from the manifests, and only that: the plant systems' URLs (the test
plant), the data directory and the port (free ones), and the hosts behind the store and Redis URLs (the real
PostgreSQL and Redis the test session starts, their scheme kept). Variables the compose file requires from the
operator (`${VAR:?...}`) are set as its header says, the identity provider being one served here on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2

from gateway.auth import DevSigner
from gateway.servers import free_block
from tests.conftest import Plant
from tests.test_deploy import (
    K8S_DOCS,
    OPERATOR,
    SERVICES,
    environment,
    healthcheck_command,
    image_environment,
    instructions,
    interpolate,
    k8s,
)

BIN = Path(sys.executable).parent
SYSTEMS = ("ERP", "QMS", "WMS", "MES")
ISSUER = "https://idp.test.invalid"


def _image_command() -> list[str]:
    """ENTRYPOINT + CMD of the image, the entrypoint found in this virtual environment as in the image's."""
    entrypoint = json.loads(instructions("ENTRYPOINT")[-1])
    return [str(BIN / entrypoint[0]), *entrypoint[1:], *json.loads(instructions("CMD")[-1])]


@contextmanager
def identity_provider(tmp_path: Path) -> Iterator[tuple[str, DevSigner]]:
    """An IdP stand-in on loopback: its JWKS URL and the key it signs with."""
    signer = DevSigner.load_or_create(tmp_path / "idp-key.pem")
    body = json.dumps(signer.jwks()).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", signer
    finally:
        server.shutdown()
        server.server_close()


def _same_scheme(manifest_url: str, test_url: str) -> str:
    """The test's server in place of the manifest's host: same kind of database, same driver."""
    assert urlsplit(manifest_url).scheme == urlsplit(test_url).scheme, (manifest_url, test_url)
    return test_url


def _on_loopback(env: dict[str, str], plant: Plant, data_dir: Path, store_url: str, redis_url: str) -> dict[str, str]:
    """The manifests' environment with only what this test must change changed (see the module docstring)."""
    changed = {
        **{f"LOTGRAPH_SOURCES__{s}__URL": plant.url(s.lower()) for s in SYSTEMS},
        "LOTGRAPH_DATA_DIR": str(data_dir),
        "LOTGRAPH_PORT": str(free_block(1)),
        "LOTGRAPH_STORE_URL": _same_scheme(env["LOTGRAPH_STORE_URL"], store_url),
        "LOTGRAPH_REDIS_URL": _same_scheme(env["LOTGRAPH_REDIS_URL"], redis_url),
    }
    assert {f"LOTGRAPH_SOURCES__{s}__URL" for s in SYSTEMS} <= env.keys()
    return {**env, **changed}


@contextmanager
def running(env: dict[str, str]) -> Iterator[str]:
    """The image's command with exactly `env` (plus PATH and the like, none of the caller's LOTGRAPH_*)."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LOTGRAPH_")}
    process = subprocess.Popen(
        _image_command(), env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{env['LOTGRAPH_PORT']}"
    try:
        _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _wait_ready(url: str, process: subprocess.Popen[str], within: float = 60) -> None:

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the gateway exited {process.returncode}: {process.communicate()[0]}")
        try:
            ready = httpx2.get(f"{url}/readyz", timeout=2)
            if ready.status_code == 200:
                assert ready.json()["store"] == "ok" and ready.json()["bus"] == "ok", ready.json()
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url}/readyz never answered 200")


def _healthcheck(port: str) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command as written, in a container whose LOTGRAPH_PORT is `port` (`python` is
    the image's virtual environment's, as here)."""
    command = healthcheck_command()
    assert command[0] == "python"
    env = {**os.environ, "LOTGRAPH_PORT": port}
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=30)


LOT = '{ lot(id: "B2600006") { id plant { id } } }'


def test_compose_gateway_starts_with_the_compose_environment(
    plant: Plant, postgres_url: str, redis_server: str, tmp_path: Path
) -> None:
    with identity_provider(tmp_path) as (jwks_url, idp):
        operator = {**OPERATOR, "LOTGRAPH_AUTH__JWKS_URL": jwks_url, "LOTGRAPH_AUTH__ISSUER": ISSUER}
        compose = {name: interpolate(str(value), operator) for name, value in environment(SERVICES["gateway"]).items()}
        manifest = {**image_environment(), **compose}
        assert manifest["LOTGRAPH_MODE"] == "production"
        env = _on_loopback(manifest, plant, tmp_path / "data", postgres_url, redis_server)
        assert env["LOTGRAPH_PORT"] != "8000", "a port other than the default, so the HEALTHCHECK must follow it"
        with running(env) as url:
            assert _healthcheck(env["LOTGRAPH_PORT"]).returncode == 0
            assert _healthcheck(str(free_block(1))).returncode != 0, "the HEALTHCHECK fails where nothing listens"
            # Tokens the configured identity provider signs are accepted; development tokens are not.
            token = idp.mint("qe-1", roles=["quality_engineer"], plants=["P100"], issuer=ISSUER, audience="lotgraph")
            answer = httpx2.post(f"{url}/graphql", json={"query": LOT}, headers={"authorization": f"Bearer {token}"})
            assert answer.json() == {"data": {"lot": {"id": "B2600006", "plant": {"id": "P100"}}}}
            dev = DevSigner.load_or_create(tmp_path / "data" / "dev-signing-key.pem")
            forged = dev.mint("dev", roles=["qa_manager"], plants=["*"], issuer=ISSUER, audience="lotgraph")
            refused = httpx2.post(f"{url}/graphql", json={"query": LOT}, headers={"authorization": f"Bearer {forged}"})
            assert refused.status_code == 401
            assert httpx2.post(f"{url}/graphql", json={"query": LOT}).status_code == 401, "production: no anonymous"


def test_kubernetes_gateway_starts_with_the_configmap_and_example_secret(
    plant: Plant, postgres_url: str, redis_server: str, tmp_path: Path
) -> None:
    deployment = k8s("Deployment", "gateway")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "command" not in container and "args" not in container, "the pod runs the image's own command"
    refs = {(next(iter(ref)), ref[next(iter(ref))]["name"]) for ref in container["envFrom"]}
    assert refs == {("configMapRef", "lotgraph-config"), ("secretRef", "lotgraph-secrets")}
    configmap = k8s("ConfigMap", "lotgraph-config")["data"]
    secret = next(d for d in K8S_DOCS if d["kind"] == "Secret" and d["metadata"]["name"] == "lotgraph-secrets")
    # envFrom: every key becomes a variable, the Secret's after the ConfigMap's.
    manifest = {**image_environment(), **{k: str(v) for k, v in {**configmap, **secret["stringData"]}.items()}}
    assert manifest["LOTGRAPH_MODE"] == "production"
    env = _on_loopback(manifest, plant, tmp_path / "data", postgres_url, redis_server)
    # The example JWKS URL is kept as it is: keys are fetched when a token first needs one, not to start.
    assert env["LOTGRAPH_AUTH__JWKS_URL"] == configmap["LOTGRAPH_AUTH__JWKS_URL"]
    with running(env) as url:
        assert httpx2.get(f"{url}/healthz").status_code == 200
        assert _healthcheck(env["LOTGRAPH_PORT"]).returncode == 0
