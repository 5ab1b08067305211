"""`lotgraph demo`: the simulated plant and the gateway, one process, embedded defaults.

The gateway listens on P, ERP, QMS, WMS and MES on P+1 … P+4, the LIMS (a GraphQL subgraph the gateway
federates) on P+5 and the supervisors' pager (which the gateway notifies of quality failures) on P+6, so a
newcomer has a whole plant behind GraphiQL with one command. A simulated production
shift makes the plant's systems change state every few seconds (production, supplier deliveries, inspections,
holds and scrap, each in one system), they push their events to the gateway (signed webhooks; MES over MQTT when
a broker is given), and the gateway's workflows carry every change to the other systems: the plant stays
consistent only because lotgraph runs.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import secrets
import time
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.auth import AuthSettings, DevSigner, mint_personas
from gateway.events.envelope import EventType
from gateway.events.settings import EventSettings, MqttSettings, Trigger
from gateway.notifications import NotificationSettings, TargetSettings
from gateway.servers import Listener, ServerGroup
from gateway.settings import Mode, Settings, local_sources
from simulators import Dataset, create_apps, generate, pager
from simulators.shift import Shift

SIMULATORS = ("erp", "qms", "wms", "mes")
# Simulated systems that are GraphQL subgraphs (lotgraph federates them): served after the four, when started.
SUBGRAPHS = ("lims",)
DEMO_STORE = "demo.db"  # a store of the demo's own, reset every run; `lotgraph run`'s default store is another file


def plant_group(
    dataset: Dataset, host: str, first_port: int, group: ServerGroup | None = None,
    apps: dict[str, Starlette] | None = None,
) -> ServerGroup:  # fmt: skip
    """The four simulators (`apps`, or fresh ones) on consecutive ports from `first_port`, then the subgraphs
    `apps` has (`create_apps(..., with_lims=True)`: the LIMS on `first_port + 4`), so the four keep their ports."""
    group = group or ServerGroup()
    apps = apps or create_apps(dataset)
    # The plant's state is long-lived: keep the collector from re-scanning it on every full collection.
    gc.freeze()
    for offset, name in enumerate(SIMULATORS + tuple(name for name in SUBGRAPHS if name in apps)):
        group.add(name.upper(), apps[name], host, first_port + offset)
    return group


def subgraph_port(first_port: int, name: str) -> int:
    """Where a simulated subgraph is served: after the four systems that start at `first_port`."""
    return first_port + len(SIMULATORS) + SUBGRAPHS.index(name)


def pager_port(port: int) -> int:
    """Where the demo's supervisors' pager listens: after the gateway (`port`), the four systems and the subgraphs."""
    return port + 1 + len(SIMULATORS) + len(SUBGRAPHS)


def subgraph_url(host: str, first_port: int, name: str) -> str:
    """A simulated subgraph's GraphQL endpoint (for `LOTGRAPH_SUBGRAPHS__<NAME>__URL`)."""
    return f"http://{host}:{subgraph_port(first_port, name)}/graphql"


def demo_settings(
    host: str, port: int, webhook_secret: str, mqtt_url: str | None = None, pager_secret: str | None = None
) -> Settings:
    """Development mode, explicitly: GraphiQL (its Headers tab pre-filled with a QA manager's token), dev tokens,
    and anonymous reads as a portal reader; the LIMS federated as a remote subgraph; the supervisors' pager
    notified of every failed inspection and opened nonconformance (signed with `pager_secret`)."""
    data_dir = Settings.model_fields["data_dir"].default
    return Settings(
        mode=Mode.DEVELOPMENT,
        host=host,
        port=port,
        data_dir=data_dir,
        store_url=f"sqlite+aiosqlite:///{data_dir / DEMO_STORE}",
        sources=local_sources(port + 1),
        subgraphs={"lims": {"url": subgraph_url(host, port + 1, "lims")}},
        auth=AuthSettings(allow_anonymous=True, anonymous_roles=("portal_reader",)),
        # Anonymous calls already read as a portal reader: a QA manager's token shows what a token adds (holds,
        # releases, operations) and answers every README example.
        graphiql_persona="qa_manager",
        events=EventSettings(
            webhook_secrets={source: SecretStr(webhook_secret) for source in ("qms", "mes", "wms")},
            mqtt=MqttSettings(url=mqtt_url),
        ),
        notifications=NotificationSettings(targets={"supervisors": TargetSettings(
            url=f"http://{host}:{pager_port(port)}/api/pages", secret=pager_secret or new_webhook_secret(),
            events=[Trigger(type=EventType.INSPECTION_COMPLETED, passed=False),
                    Trigger(type=EventType.NONCONFORMANCE_OPENED)],
        )}),
    )  # fmt: skip


def fresh_store(settings: Settings) -> None:
    """Forget the previous demo's operations: its plant is gone (each run seeds a new one), so a stored
    operation would answer a repeated idempotency key (the README's) with holds this plant never saw. Only the
    demo's own store (DEMO_STORE) goes: `lotgraph run`'s store in the same directory is never touched."""
    database = settings.data_dir / DEMO_STORE
    for path in (database, database.with_name(f"{DEMO_STORE}-wal"), database.with_name(f"{DEMO_STORE}-shm")):
        path.unlink(missing_ok=True)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret, fresh per demo run (the plant and the gateway share it in this process)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def plant_events(settings: Settings, secret: str, mqtt_url: str | None) -> dict[str, dict[str, Any]]:
    """Where the simulated QMS, MES and WMS (its receiving dock) send their events: the gateway's webhooks, or MES
    to the broker."""
    gateway = f"http://{settings.host}:{settings.port}/webhooks"
    mes = (
        {"mqtt": {"url": mqtt_url, "enterprise": "acme"}}
        if mqtt_url
        else {"webhook": {"url": f"{gateway}/mes", "secret": secret}}
    )
    return {
        "qms": {"webhook": {"url": f"{gateway}/qms", "secret": secret}},
        "wms": {"webhook": {"url": f"{gateway}/wms", "secret": secret}},
        "mes": mes,
    }


def demo_group(dataset: Dataset, settings: Settings, apps: dict[str, Starlette], pager_secret: str) -> ServerGroup:
    group = ServerGroup()
    group.add("gateway", create_app(settings), settings.host, settings.port)
    plant_group(dataset, settings.host, settings.port + 1, group, apps)
    group.add("PAGER", pager.create_app(pager_secret), settings.host, pager_port(settings.port))
    return group


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
            "The lab's results from the LIMS subgraph, federated into the same lot",
            f'{{ lot(id: "{diverged}") {{ id qualityStatus labSamples {{ test result unit withinSpec }} '
            "certificateOfAnalysis { number conforms } } }",
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


def banner(listeners: list[Listener], dataset: Dataset, seconds: float, tokens: dict[str, str]) -> str:
    lines = [f"lotgraph demo: a plant of {len(dataset.lots)} lots, ready in {seconds:.1f} s", ""]
    for listener in listeners:
        path = {"gateway": "/graphql", "LIMS": "/graphql", "PAGER": "/_admin/pages"}.get(listener.name, "")
        lines.append(f"  {listener.name:8} {listener.url}{path}")
    lines += ["", "Open GraphiQL at the gateway URL (its Headers tab holds a QA manager's token) and try:"]
    for title, query in example_queries(dataset):
        lines += [f"  # {title}", f"  {query}", ""]
    lines.append("Ready tokens (send as 'Authorization: Bearer <token>'; anonymous calls read as portal_reader):")
    lines += [f"  {persona:16} {token}" for persona, token in tokens.items()]
    lines += [
        "These were signed in at start-up; a release needs a sign-in with MFA within the last 5 minutes. A fresh",
        "token, signed with the same development key (from the directory the demo runs in):",
        "  LOTGRAPH_MODE=development .venv/bin/lotgraph token --role qa_manager --plant '*' --mfa",
    ]
    lines += [
        "",
        "A production shift is running: watch it with",
        "  subscription { qualityEvents { cursor type plant lotId payload } }",
        "The supervisors' pager (PAGER above) lists the failed inspections and opened nonconformances lotgraph",
        "notified it of, each verified against its own Standard Webhooks secret.",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


async def run_demo(
    host: str, port: int, seed: int, lots: int, shift_seconds: float = 3.0, mqtt_url: str | None = None,
    shift_duration: float | None = None,
) -> None:  # fmt: skip
    """Serve the plant and the gateway until a signal; the shift steps every `shift_seconds` (0: no shift), for
    `shift_duration` seconds if given (then the workflows finish and the plant holds still)."""
    started = time.perf_counter()
    dataset = generate(seed=seed, lots=lots)
    secret, pager_secret = new_webhook_secret(), new_webhook_secret()
    settings = demo_settings(host, port, secret, mqtt_url, pager_secret)
    fresh_store(settings)
    apps = create_apps(dataset, events=plant_events(settings, secret, mqtt_url), with_lims=True)
    # The gateway reads the LIMS's SDL while it is being created, before this loop serves anything: the LIMS
    # is served from a thread of its own, already up by then.
    lims = ServerGroup()
    lims.add("LIMS", apps.pop("lims"), host, subgraph_port(port + 1, "lims"))
    with lims.running_in_thread():
        group = demo_group(dataset, settings, apps, pager_secret)
        tokens = persona_tokens(dataset, settings)
        generated = time.perf_counter() - started
        shift: list[asyncio.Task[None]] = []

        async def announce() -> None:
            print(banner([*group.listeners, *lims.listeners], dataset, generated, tokens), flush=True)
            if shift_seconds > 0:
                supplier = dataset.lots[dataset.recall_lot].supplier  # the supplier persona's: it sees events too
                running = Shift.for_apps(apps, seed, shift_seconds, supplier=supplier).run(shift_duration)
                shift.append(asyncio.create_task(running, name="shift"))

        try:
            await group.serve_until_signal(on_started=announce)
        finally:
            for task in shift:
                task.cancel()
