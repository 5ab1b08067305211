"""A cursor names the stream it came from: resuming on another stream (the in-memory bus of a restarted process,
a Redis that was emptied) is refused with CURSOR_EXPIRED instead of silently skipping what was lost, while a
cursor on a Redis stream that outlived the gateway still resumes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import redis

from gateway.auth import AuthSettings, DevSigner
from simulators import Dataset
from tests.conftest import Plant, gateway_process
from tests.events import QUALITY_EVENTS, SECRET, QmsEvents, Webhooks, WsClient, error_codes, fresh_redis, supplied_lots

REDIS_DB = 13  # a Redis database of this module's own, emptied before use


@contextmanager
def events_gateway(plant: Plant, data_dir: Path, redis_url: str | None = None) -> Iterator[str]:
    """`lotgraph run` taking signed QMS webhooks (in-memory bus, or Redis Streams); SIGKILLed afterwards."""
    extra = {"REDIS_URL": redis_url} if redis_url else {}
    with gateway_process(
        plant, data_dir, EVENTS__WEBHOOK_SECRETS=json.dumps({"qms": SECRET}), EVENTS__CONTAINMENT__ENABLED="false",
        EVENTS__ERP_POLL_SECONDS="0", **extra,
    ) as running:  # fmt: skip
        running.wait_ready()
        yield running.url


def _token(data_dir: Path) -> str:
    auth = AuthSettings()
    signer = DevSigner.load_or_create(auth.dev_key_path(data_dir))
    return signer.mint("test-quality-engineer", roles=("quality_engineer",), plants=("*",),
                       issuer=auth.issuer, audience=auth.audience)  # fmt: skip


async def _publish(url: str, dataset: Dataset, count: int) -> list[dict[str, Any]]:
    """`count` QMS status events posted one after the other; the gateway's answers (`id`, `cursor`)."""
    qms, lots = QmsEvents(dataset), list(supplied_lots(dataset, plant="P100"))[-count:]
    async with httpx2.AsyncClient(timeout=30) as client:
        hooks = Webhooks(client, url)
        return [await hooks.publish(qms.status_changed(lot.id, "REJECTED")) for lot in lots]


async def _resume(url: str, token: str, after: str, count: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Subscribe with `after`: the first `count` events, or (with none expected) the first message."""
    async with WsClient.connect(url, token) as ws:
        await ws.acknowledged()
        await ws.subscribe("q", QUALITY_EVENTS, {"after": after})
        if count:
            return [await ws.event("q") for _ in range(count)], {}
        return [], await ws.message("q")


def _expired(message: dict[str, Any]) -> bool:
    return error_codes(message) == ["CURSOR_EXPIRED"] and message["payload"]["errors"][0]["extensions"] == {
        "code": "CURSOR_EXPIRED", "argument": "after"}  # fmt: skip


async def test_a_cursor_from_before_a_restart_is_refused_on_the_in_memory_bus(
    plant: Plant, dataset: Dataset, tmp_path: Path
) -> None:
    """A subscriber's last cursor is from a process that was killed; the restarted one has published five events
    on a new stream: resuming with the old cursor ends with CURSOR_EXPIRED naming `after`, never a silent gap.
    From the start (`0-0`) the new stream is replayed."""
    with events_gateway(plant, tmp_path) as url:
        before = await _publish(url, dataset, 3)
    with events_gateway(plant, tmp_path) as url:
        token = _token(tmp_path)
        after = await _publish(url, dataset, 5)
        _, refused = await _resume(url, token, before[-1]["cursor"], 0)
        replayed, _ = await _resume(url, token, "0-0", 5)
    assert _expired(refused), refused
    assert "subscribe without `after`" in refused["payload"]["errors"][0]["message"]
    assert [e["cursor"] for e in replayed] == [a["cursor"] for a in after]


async def test_a_redis_cursor_resumes_across_a_gateway_restart_but_not_across_a_flush(
    plant: Plant, dataset: Dataset, tmp_path: Path, redis_server: str
) -> None:
    """On Redis the stream outlives the gateway: after a restart, the old cursor resumes with exactly the events
    published since. Once Redis is emptied, the same cursor is refused, before and after new events arrive."""
    redis_url = fresh_redis(redis_server, REDIS_DB)
    with events_gateway(plant, tmp_path, redis_url) as url:
        before = await _publish(url, dataset, 3)
    with events_gateway(plant, tmp_path, redis_url) as url:
        token = _token(tmp_path)
        since = await _publish(url, dataset, 2)
        resumed, _ = await _resume(url, token, before[-1]["cursor"], 2)
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()
        _, refused_empty = await _resume(url, token, before[-1]["cursor"], 0)
        newer = await _publish(url, dataset, 1)
        _, refused = await _resume(url, token, since[-1]["cursor"], 0)
        replayed, _ = await _resume(url, token, "0-0", 1)
    assert [e["id"] for e in resumed] == [a["id"] for a in since]
    assert _expired(refused_empty), refused_empty
    assert _expired(refused), refused
    assert replayed[0]["cursor"] == newer[0]["cursor"] != since[-1]["cursor"]
