"""Start-up refuses a remote subgraph that cannot join lotgraph's schema, with a message naming what clashes:
a type of lotgraph's defined again, a field both define, an entity keyed by something else than `id`, two
subgraphs defining one type, or a subgraph that cannot be read. Each subgraph here is a real HTTP endpoint
answering `_service { sdl }` with the SDL under test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.federation.client import FederationError
from gateway.servers import ServerGroup, free_block
from gateway.settings import Mode, Settings, local_sources

LINK = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key", "@shareable"])\n'
LIMS = LINK + 'type Lot @key(fields: "id") { id: ID! labSamples: [LabSample!]! }\ntype LabSample { test: String! }'


def sdl_only(sdl: str) -> Starlette:
    async def graphql(request: Request) -> JSONResponse:
        return JSONResponse({"data": {"_service": {"sdl": sdl}}})

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])


@contextmanager
def subgraphs(*sdls: str) -> Iterator[dict[str, dict[str, str]]]:
    """Each SDL served by a subgraph of its own on loopback; their settings by name (`sub0`, `sub1`, ...)."""
    with ExitStack() as stack:
        group = ServerGroup()
        listeners = [group.add(f"sub{n}", sdl_only(sdl), "127.0.0.1", free_block(1)) for n, sdl in enumerate(sdls)]
        stack.enter_context(group.running_in_thread())
        yield {f"sub{n}": {"url": f"{listener.url}/graphql"} for n, listener in enumerate(listeners)}


def settings(tmp_path: Path, configured: dict[str, dict[str, str]]) -> Settings:
    return Settings(
        mode=Mode.DEVELOPMENT, data_dir=tmp_path, sources=local_sources(free_block(4)), subgraphs=configured
    )


@pytest.mark.parametrize(
    ("sdl", "says"),
    [
        (LINK + "type Plant { id: ID! name: String }", "subgraph sub0 defines type Plant, which lotgraph defines"),
        (
            LINK + 'type Lot @key(fields: "id") { id: ID! qualityStatus: String }',
            "non-shareable field Lot.qualityStatus is defined by lotgraph and by subgraph sub0",
        ),
        (
            LINK + 'type Lot @key(fields: "id") @shareable { id: ID! expiresOn: String @shareable }',
            "non-shareable field Lot.expiresOn is defined by lotgraph and by subgraph sub0",
        ),
        (
            LINK + 'type Lot @key(fields: "batch") { batch: String! notes: String }',
            'subgraph sub0 extends Lot with keys "batch": lotgraph resolves its entities by "id" only',
        ),
        (LINK + "type Lot { id: ID! notes: String }", "subgraph sub0 extends Lot with keys none"),
        (LINK + "type LabSample { test: Int", "subgraph sub0: its SDL does not parse"),
    ],
)
def test_a_conflicting_subgraph_is_refused_at_start_up(tmp_path: Path, sdl: str, says: str) -> None:
    with subgraphs(sdl) as configured, pytest.raises(FederationError) as refused:
        create_app(settings(tmp_path, configured))
    assert says in str(refused.value)


def test_two_subgraphs_defining_one_type_are_refused(tmp_path: Path) -> None:
    other = LINK + 'type Lot @key(fields: "id") { id: ID! certificate: LabSample }\ntype LabSample { test: String! }'
    with subgraphs(LIMS, other) as configured, pytest.raises(FederationError) as refused:
        create_app(settings(tmp_path, configured))
    assert "type LabSample is defined by subgraphs sub0 and sub1" in str(refused.value)


def test_a_field_two_subgraphs_add_is_refused(tmp_path: Path) -> None:
    other = LINK + 'type Lot @key(fields: "id") { id: ID! labSamples: [String!]! }'
    with subgraphs(LIMS, other) as configured, pytest.raises(FederationError) as refused:
        create_app(settings(tmp_path, configured))
    assert "field Lot.labSamples is defined by subgraphs sub0 and sub1" in str(refused.value)


def test_a_compatible_subgraph_is_accepted(tmp_path: Path) -> None:
    """The control: the same machinery accepts a subgraph that only adds (so the refusals above are real)."""
    with subgraphs(LIMS) as configured:
        app = create_app(settings(tmp_path, configured))
    assert set(app.state.runtime.subgraphs) == {"sub0"}


def test_lotgraph_run_exits_saying_why_when_a_subgraph_cannot_be_read(tmp_path: Path) -> None:
    """The operator's view: `lotgraph run` with a subgraph nobody answers for exits 2 with one clear line, no
    traceback."""
    port = free_block(1)  # nothing listens there
    env = dict(os.environ, LOTGRAPH_MODE="development", LOTGRAPH_DATA_DIR=str(tmp_path),
               LOTGRAPH_SUBGRAPHS__LIMS__URL=f"http://127.0.0.1:{port}/graphql")  # fmt: skip
    lotgraph = str(Path(sys.executable).parent / "lotgraph")
    ran = subprocess.run([lotgraph, "run", "--port", str(free_block(1))], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert ran.returncode == 2, ran.stderr
    assert f"subgraph lims at http://127.0.0.1:{port}/graphql: cannot read its SDL" in ran.stderr
    assert "Traceback" not in ran.stderr
