"""Hold, release and recall orchestration: durable, idempotent operations across QMS, WMS and ERP."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.events.hub import Events
from gateway.operations.announcements import Announcer
from gateway.operations.executor import Executor, Resumer
from gateway.store import Store
from gateway.store.operations import OperationStore
from gateway.upstream import Upstream


@dataclass
class Operations:
    store: OperationStore
    executor: Executor
    resumer: Resumer

    @classmethod
    def start(cls, upstream: Upstream, store: Store, retry_seconds: float, events: Events) -> Operations:
        operations = OperationStore(store.engine)
        executor = Executor(upstream, operations, store.audit, announce=Announcer(events, upstream).progressed)
        resumer = Resumer(executor, retry_seconds)
        resumer.start()
        return cls(operations, executor, resumer)

    async def stop(self) -> None:
        await self.resumer.stop()
