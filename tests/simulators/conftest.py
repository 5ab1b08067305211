"""Fixtures for the simulator tests: a small plant for most tests, the default plant where size matters.

Each simulator app is built fresh per test (its state is mutable) and queried in-process over httpx2's
ASGI transport: the simulator itself is the unit under test here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from simulators import Dataset, erp, generate, mes, qms, wms

FACTORIES: dict[str, Callable[[Dataset], Starlette]] = {
    "erp": erp.create_app,
    "qms": qms.create_app,
    "wms": wms.create_app,
    "mes": mes.create_app,
}


@pytest.fixture(scope="session")
def small() -> Dataset:
    return generate(seed=7, lots=2000)


@pytest.fixture(scope="session")
def full() -> Dataset:
    """The default dataset (seed 42, 20,000 lots), for properties that need the real size."""
    return generate()


def connect(app: Starlette) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://sim")


def _client_fixture(system: str) -> Any:
    async def client(small: Dataset) -> AsyncIterator[httpx2.AsyncClient]:
        async with connect(FACTORIES[system](small)) as opened:
            yield opened

    return pytest.fixture(client, name=f"{system}_client")


erp_client = _client_fixture("erp")
qms_client = _client_fixture("qms")
wms_client = _client_fixture("wms")
mes_client = _client_fixture("mes")


@pytest.fixture(name="connect")
def connect_fixture() -> Callable[[Starlette], httpx2.AsyncClient]:
    """An in-process client for an app a test built itself."""
    return connect


@pytest.fixture
def build(small: Dataset) -> Callable[[str], Starlette]:
    """A fresh app of the named simulator over the small dataset."""
    return lambda system: FACTORIES[system](small)
