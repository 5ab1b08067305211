"""Fixtures that run the simulated plant and gateways on real loopback ports.

Everything the gateway asks for travels over HTTP to the simulators; tests read the simulators'
admin API (`/_admin/stats`, `/_admin/faults`) to see what the gateway actually did upstream.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway.app import create_app
from gateway.auth import AuthSettings, DevSigner
from gateway.demo import SIMULATORS, plant_group
from gateway.events.settings import EventSettings
from gateway.reconcile.settings import ReconciliationSettings
from gateway.resilience import ResilienceSettings
from gateway.servers import ServerGroup, free_block
from gateway.settings import Mode, Settings, local_sources
from simulators import Dataset, create_apps, generate
from simulators.lims import create_app as lims_app
from simulators.shift import Shift

SEED = 42


@dataclass
class Plant:
    dataset: Dataset
    first_port: int

    def url(self, system: str) -> str:
        return f"http://127.0.0.1:{self.first_port + SIMULATORS.index(system)}"

    def admin(self, system: str, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        response = httpx2.request(method, f"{self.url(system)}/_admin/{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response

    def reset_stats(self) -> None:
        for system in SIMULATORS:
            self.admin(system, "DELETE", "stats")

    def requests_served(self, system: str) -> int:
        return self.admin(system, "GET", "stats").json()["total"]

    def served(self) -> dict[str, int]:
        return {system: self.requests_served(system) for system in SIMULATORS}

    def fault(self, system: str, **fault: Any) -> None:
        self.admin(system, "POST", "faults", json=fault)

    def clear_faults(self) -> None:
        for system in SIMULATORS:
            self.admin(system, "DELETE", "faults")


@dataclass
class Gateway:
    url: str
    settings: Settings

    def token(
        self, *roles: str, sub: str | None = None, plants: tuple[str, ...] = ("*",), supplier: str | None = None,
        mfa: bool = False, auth_age: timedelta = timedelta(0),
    ) -> str:  # fmt: skip
        """A development token for this gateway (it trusts its own dev key in development mode)."""
        signer = DevSigner.load_or_create(self.settings.auth.dev_key_path(self.settings.data_dir))
        return signer.mint(
            sub or f"test-{'-'.join(roles) or 'nobody'}",
            roles=roles,
            plants=plants,
            supplier_id=supplier,
            amr=("pwd", "mfa") if mfa else ("pwd",),
            auth_time=datetime.now(UTC) - auth_age,
            issuer=self.settings.auth.issuer,
            audience=self.settings.auth.audience,
        )

    def execute(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx2.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers, timeout=60
        )
        assert response.headers["content-type"].startswith("application/json"), response.text
        return response.json()

    def data(self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None) -> dict[str, Any]:
        """Execute and insist on a clean answer."""
        result = self.execute(query, variables, token=token)
        assert "errors" not in result, result["errors"]
        return result["data"]


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return generate(seed=SEED, lots=20_000)


@pytest.fixture(scope="session")
def plant(dataset: Dataset) -> Iterator[Plant]:
    first_port = free_block(len(SIMULATORS))
    with plant_group(dataset, "127.0.0.1", first_port).running_in_thread():
        yield Plant(dataset, first_port)


async def eventually(check: Any, within: float = 30.0) -> Any:
    """Poll `check()` until it returns something truthy (the gateway works asynchronously after an event)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (result := check()):
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.25)
    return result


@contextmanager
def plant_of_its_own(seed: int, lots: int = 3000) -> Iterator[tuple[Plant, Shift]]:
    """A small plant for tests that change lots the shared plant's tests rely on, and a shift over its systems
    (to pick what a person would use, and to act as one)."""
    dataset = generate(seed=seed, lots=lots)
    apps = create_apps(dataset)
    first_port = free_block(len(SIMULATORS))
    with plant_group(dataset, "127.0.0.1", first_port, apps=apps).running_in_thread():
        yield Plant(dataset, first_port), Shift.for_apps(apps, seed=seed)


@dataclass
class Lims:
    """The LIMS subgraph simulator (`simulators/lims.py`) on loopback."""

    url: str

    @property
    def graphql(self) -> str:
        return f"{self.url}/graphql"

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        response = httpx2.request(method, f"{self.url}/_admin/{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response

    def requests_served(self) -> int:
        return self.admin("GET", "stats").json()["total"]

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ask the LIMS itself, as a router or a lab client would."""
        answer = httpx2.post(self.graphql, json={"query": document, "variables": variables or {}}, timeout=30).json()
        assert "errors" not in answer, answer["errors"]
        return answer["data"]


@pytest.fixture(scope="session")
def lims(dataset: Dataset) -> Iterator[Lims]:
    group = ServerGroup()
    listener = group.add("lims", lims_app(dataset))
    with group.running_in_thread():
        yield Lims(listener.url)


@pytest.fixture(autouse=True)
def _no_lingering_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "plant" in request.fixturenames:
        request.getfixturevalue("plant").clear_faults()
    if "lims" in request.fixturenames:
        request.getfixturevalue("lims").admin("DELETE", "faults")


@contextmanager
def start_gateway(plant: Plant, **overrides: Any) -> Iterator[Gateway]:
    """A gateway of its own over the session's plant, with settings overridden (e.g. a source's version)."""
    sources = local_sources(plant.first_port)
    # Tests fault the shared simulators one after another: a breaker left open by one test must not fail
    # the next, so test gateways only open a circuit when a test configures one (tests/test_resilience.py).
    isolated = ResilienceSettings(breaker_min_calls=1_000_000)
    sources = sources.model_copy(update={s: getattr(sources, s).model_copy(update={"resilience": isolated})
                                         for s in SIMULATORS})  # fmt: skip
    for system, changes in overrides.pop("sources", {}).items():
        sources = sources.model_copy(update={system: getattr(sources, system).model_copy(update=changes)})
    with tempfile.TemporaryDirectory(prefix="lotgraph-test-") as data_dir:
        settings = Settings(
            **{
                "mode": Mode.DEVELOPMENT,
                "sources": sources,
                "data_dir": Path(data_dir),
                # Anonymous callers read as portal readers, so graph tests need no token; security tests mint one.
                "auth": AuthSettings(allow_anonymous=True, anonymous_roles=("portal_reader",)),
                # Tests count the requests the simulators serve: polling the ERP is asked for where it is tested.
                "events": EventSettings(erp_poll_seconds=0),
                # Likewise the reconciliation sweep and its re-checks (tests/test_reconciliation.py turns them on).
                "reconciliation": ReconciliationSettings(enabled=False),
                **overrides,
            }
        )
        group = ServerGroup()
        listener = group.add("gateway", create_app(settings))
        with group.running_in_thread():
            yield Gateway(listener.url, settings)


def production_auth(directory: Path) -> AuthSettings:
    """Production authentication trusting an identity provider's key made in `directory` (no anonymous callers);
    `Gateway.token` signs with that provider's private key, so tests mint tokens as they do in development."""
    signer = DevSigner.load_or_create(private := directory / "idp-private.pem")
    (public := directory / "idp.json").write_text(json.dumps(signer.jwks()))
    return AuthSettings(key_file=public, dev_key_file=private)


@dataclass
class GatewayProcess:
    """`lotgraph run` in a process of its own (see `gateway_process`)."""

    url: str
    process: subprocess.Popen[bytes]

    def wait_ready(self, path: str = "/readyz", within: float = 60) -> None:
        """Until `path` answers 200; the process must not exit meanwhile (its port taken, a failing start-up)."""
        deadline = time.monotonic() + within
        while True:
            assert self.process.poll() is None, f"the gateway on {self.url} exited"
            try:
                if httpx2.get(f"{self.url}{path}", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, f"{self.url} did not come up"
            time.sleep(0.1)


@contextmanager
def gateway_process(
    plant: Plant, data_dir: Path, *, stop: signal.Signals = signal.SIGKILL, **settings: str
) -> Iterator[GatewayProcess]:
    """`lotgraph run` over the session's plant as an operator starts it: development mode, configured by
    `LOTGRAPH_<NAME>` environment variables from `settings` (`REDIS_URL="redis://..."`). Not yet ready when
    yielded (`wait_ready`); stopped by `stop` afterwards: SIGKILL is a crash, SIGINT a clean stop."""
    port = free_block(1)
    env = dict(
        os.environ,
        LOTGRAPH_MODE="development",
        LOTGRAPH_DATA_DIR=str(data_dir),
        LOTGRAPH_RECONCILIATION__ENABLED="false",  # a background sweep of the shared plant only where asked for
        **{f"LOTGRAPH_SOURCES__{s.upper()}__URL": plant.url(s) for s in SIMULATORS},
        **{f"LOTGRAPH_{name}": value for name, value in settings.items()},
    )
    lotgraph = str(Path(sys.executable).parent / "lotgraph")
    process = subprocess.Popen([lotgraph, "--log-level", "warning", "run", "--port", str(port)], env=env)
    try:
        yield GatewayProcess(f"http://127.0.0.1:{port}", process)
    finally:
        if process.poll() is None:
            process.send_signal(stop)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def gateway(plant: Plant) -> Iterator[Gateway]:
    with start_gateway(plant) as started:
        yield started


@pytest.fixture(scope="module")
def ops_gateway(plant: Plant) -> Iterator[Gateway]:
    """A gateway of the module's own for operations, whose resumer retries pending ones every 0.3 s."""
    with start_gateway(plant, operation_retry_seconds=0.3) as gateway:
        yield gateway


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL on loopback for the session (started here when none is configured)."""
    from tests.services import postgres

    with postgres() as url:
        yield url


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh, empty database on the session's PostgreSQL, dropped after the test."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(postgres_server, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real Redis on loopback for the session (started here when none is configured)."""
    from tests.services import redis

    with redis() as url:
        yield url


@pytest.fixture(scope="session")
def mqtt_server() -> Iterator[str]:
    """A real Mosquitto on loopback for the session (started here when none is configured)."""
    from tests.services import mosquitto

    with mosquitto() as url:
        yield url
