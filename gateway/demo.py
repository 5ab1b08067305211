"""`lotgraph demo`: the four simulated systems and the gateway, one process, embedded defaults.

The gateway listens on P, and ERP, QMS, WMS and MES on P+1 … P+4, so a newcomer has a whole plant
behind GraphiQL with one command.
"""

from __future__ import annotations

import gc
import time

from gateway.app import create_app
from gateway.auth import AuthSettings, DevSigner, mint_personas
from gateway.servers import ServerGroup
from gateway.settings import Mode, Settings, local_sources
from simulators import Dataset, create_apps, generate

SIMULATORS = ("erp", "qms", "wms", "mes")


def plant_group(dataset: Dataset, host: str, first_port: int, group: ServerGroup | None = None) -> ServerGroup:
    """The four simulators on consecutive ports from `first_port`."""
    group = group or ServerGroup()
    apps = create_apps(dataset)
    # The plant's state is long-lived: keep the collector from re-scanning it on every full collection.
    gc.freeze()
    for offset, name in enumerate(SIMULATORS):
        group.add(name.upper(), apps[name], host, first_port + offset)
    return group


def demo_settings(host: str, port: int) -> Settings:
    """Development mode, explicitly: GraphiQL, dev tokens, and anonymous reads as a portal reader."""
    return Settings(
        mode=Mode.DEVELOPMENT,
        host=host,
        port=port,
        sources=local_sources(port + 1),
        auth=AuthSettings(allow_anonymous=True, anonymous_roles=("portal_reader",)),
    )


def demo_group(dataset: Dataset, settings: Settings) -> ServerGroup:
    group = ServerGroup()
    group.add("gateway", create_app(settings), settings.host, settings.port)
    return plant_group(dataset, settings.host, settings.port + 1, group)


def example_queries(dataset: Dataset) -> list[tuple[str, str]]:
    """A few queries that return data on this dataset, for the banner."""
    diverged = next(iter(dataset.divergent), dataset.recall_lot)
    return [
        (
            "One lot across ERP, QMS, WMS and MES",
            f'{{ lot(id: "{diverged}") {{ id material {{ description }} qualityStatus '
            "stockPositions { warehouse handlingUnit status } "
            "consistency { consistent disagreements } } }",
        ),
        (
            "Where did a raw-material lot go? (recall)",
            f'{{ lot(id: "{dataset.recall_lot}") {{ genealogy(direction: DOWNSTREAM, maxDepth: 6) '
            "{ depthReached nodes { id } edges { from to quantity unit } } } }",
        ),
        (
            "Rejected lots at plant P200",
            '{ lots(filter: {plant: "P200", qualityStatus: REJECTED}, first: 5) '
            "{ totalCount edges { node { id material { description } } } } }",
        ),
    ]


def persona_tokens(dataset: Dataset, settings: Settings) -> dict[str, str]:
    signer = DevSigner.load_or_create(settings.auth.dev_key_path(settings.data_dir))
    return mint_personas(signer, settings.auth, supplier_id=dataset.lots[dataset.recall_lot].supplier)


def banner(group: ServerGroup, dataset: Dataset, seconds: float, tokens: dict[str, str]) -> str:
    lines = [f"lotgraph demo: a plant of {len(dataset.lots)} lots, ready in {seconds:.1f} s", ""]
    for listener in group.listeners:
        path = "/graphql" if listener.name == "gateway" else ""
        lines.append(f"  {listener.name:8} {listener.url}{path}")
    lines += ["", "Open GraphiQL at the gateway URL and try:"]
    for title, query in example_queries(dataset):
        lines += [f"  # {title}", f"  {query}", ""]
    lines.append("Ready tokens (send as 'Authorization: Bearer <token>'; anonymous calls read as portal_reader):")
    lines += [f"  {persona:16} {token}" for persona, token in tokens.items()]
    lines += ["", "Ctrl-C stops everything."]
    return "\n".join(lines)


async def run_demo(host: str, port: int, seed: int, lots: int) -> None:
    started = time.perf_counter()
    dataset = generate(seed=seed, lots=lots)
    settings = demo_settings(host, port)
    group = demo_group(dataset, settings)
    tokens = persona_tokens(dataset, settings)
    generated = time.perf_counter() - started

    async def announce() -> None:
        print(banner(group, dataset, generated, tokens), flush=True)

    await group.serve_until_signal(on_started=announce)
