"""The long-lived parts of one gateway process, opened once and shared by every request:
upstream connectors, the store, the policy engine, the authenticator, the event bus, the exception queue, the
notifications' delivery worker and reconciliation."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field

from redis.asyncio import Redis

from gateway import __version__
from gateway.auth import Authenticator, build_authenticator
from gateway.authz import ReadDecisions
from gateway.events.hub import Events
from gateway.events.mqtt import MqttIngest
from gateway.events.polling import ErpChangeFeed
from gateway.exceptions import Exceptions
from gateway.federation.client import SubgraphClient
from gateway.notifications import Notifications
from gateway.operations.service import Operations
from gateway.reconcile.service import Reconciliation
from gateway.settings import Mode, Settings
from gateway.store import Store, describe
from gateway.telemetry import Metrics, setup_tracing
from gateway.upstream import Upstream
from policies.engine import PolicyEngine

log = logging.getLogger("lotgraph.runtime")


@dataclass
class Runtime:
    settings: Settings
    upstream: Upstream
    policies: PolicyEngine
    authenticator: Authenticator
    metrics: Metrics
    redis: Redis | None
    events: Events
    notifications: Notifications
    store: Store | None = field(default=None)
    _operations: Operations | None = field(default=None)
    _exceptions: Exceptions | None = field(default=None)
    _reconciliation: Reconciliation | None = field(default=None)
    _feeds: list[MqttIngest | ErpChangeFeed] = field(default_factory=list)
    event_reads: ReadDecisions = field(default_factory=ReadDecisions)  # subscribers' decisions, shared
    subgraphs: dict[str, SubgraphClient] = field(default_factory=dict)  # remote subgraphs lotgraph federates

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        """Everything that needs no I/O; `start` opens the store."""
        setup_tracing(settings.telemetry)
        metrics = Metrics()
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        upstream = Upstream.open(settings.sources, metrics, settings.cache, redis)
        return cls(
            settings=settings,
            metrics=metrics,
            redis=redis,
            upstream=upstream,
            events=Events.open(settings.events, settings.redis_url, upstream.cache, metrics),
            notifications=Notifications(settings.notifications, metrics),
            policies=PolicyEngine(),
            subgraphs={name: SubgraphClient(name, subgraph) for name, subgraph in settings.subgraphs.items()},
            authenticator=build_authenticator(
                settings.auth, data_dir=settings.data_dir, development=settings.mode is Mode.DEVELOPMENT
            ),
        )

    async def start(self) -> None:
        """Open the store, resume whatever operations a previous run left pending, start the event feeds."""
        self.store = await Store.open(self.settings.resolved_store_url)
        self._log_configuration()
        self._operations = Operations.start(
            self.upstream,
            self.store,
            self.settings.operation_retry_seconds,
            self.events,
            self.policies,
            self.settings.max_genealogy_depth,
            self.metrics,
        )
        reconciliation = self._reconciliation = Reconciliation.open(self.settings, self.store, self.upstream,
                                                                    self.metrics)  # fmt: skip
        self._operations.observers.append(reconciliation.operation_completed)
        if self.settings.reconciliation.enabled:  # after the workflows: the lot as they left it
            self.events.react("reconciliation", reconciliation.react)
        await self.notifications.start(self.store.outbox, self.store.exceptions)
        await self.events.start(self.store.inbox, self.store.exceptions)
        reconciliation.start()
        self._exceptions = Exceptions(
            self.store.exceptions, self.store.inbox, self.events, self._operations, self.notifications
        )
        events = self.settings.events
        if events.mqtt.url:
            client_id = f"lotgraph-{socket.gethostname()}-{self.settings.port}"
            self._feeds.append(MqttIngest(events.mqtt, self.events, client_id))
        if events.erp_poll_seconds:
            self._feeds.append(ErpChangeFeed(self.upstream, self.events, self.store.cursors, events.erp_poll_seconds))
        for feed in self._feeds:
            feed.start()

    async def aclose(self) -> None:
        for feed in self._feeds:
            await feed.aclose()
        if self._reconciliation is not None:
            await self._reconciliation.aclose()
        if self._operations is not None:
            await self._operations.stop()
        await self.events.aclose()
        await self.notifications.aclose()
        await self.upstream.aclose()
        for subgraph in self.subgraphs.values():
            await subgraph.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.store is not None:
            await self.store.aclose()

    def _log_configuration(self) -> None:
        """What this process runs with, at start: the first thing to check when it behaves unexpectedly."""
        settings = self.settings
        shared = "redis" if settings.redis_url else "memory"
        log.info(
            "lotgraph %s in %s mode: store %s, bus %s, cache %s, policy set %s (%d policies)",
            __version__, settings.mode.value, describe(settings.resolved_store_url), shared, shared,
            self.policies.content_hash[:16], len(self.policies.policies),
        )  # fmt: skip
        for name in ("erp", "qms", "wms", "mes"):
            source = getattr(settings.sources, name)
            contracts = sorted(c for c in self.upstream.in_use() if c.startswith(f"{name}."))
            log.info("source %s at %s, API version %d: %s", name, source.url, source.version, ", ".join(contracts))
        for name, subgraph in settings.subgraphs.items():
            log.info("subgraph %s at %s", name, subgraph.url)

    def feed_status(self) -> dict[str, str]:
        """Each event feed (MQTT, ERP polling) and how it is doing, for `/readyz`."""
        return {feed.name: feed.status for feed in self._feeds}

    @property
    def operations(self) -> Operations:
        if self._operations is None:
            raise RuntimeError("operations start with the application's lifespan")
        return self._operations

    @property
    def exceptions(self) -> Exceptions:
        if self._exceptions is None:
            raise RuntimeError("the exception queue starts with the application's lifespan")
        return self._exceptions

    @property
    def reconciliation(self) -> Reconciliation:
        if self._reconciliation is None:
            raise RuntimeError("reconciliation starts with the application's lifespan")
        return self._reconciliation

    @property
    def opened_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the store is opened by the application's lifespan")
        return self.store
