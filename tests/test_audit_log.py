"""The audit log is append-only and hash-chained: any edit, removal or reordering is found and named."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.store import Store
from gateway.store.audit import entry_row


async def _store_with_entries(url: str, count: int = 5) -> Store:
    store = await Store.open(url)
    for index in range(count):
        await store.audit.append(
            actor=f"user-{index % 2}",
            action="placeQualityHold",
            resource=f"Lot::B{index}",
            decision="ALLOW" if index % 3 else "DENY",
            reason="test",
            policy_ids=[f"policy-{index}"],
            details={"before": {"QMS": "RELEASED"}, "after": {"QMS": "ON_HOLD"}},
            correlation_id=f"cid-{index}",
        )
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    return request.getfixturevalue("postgres_url")


async def test_untouched_chain_verifies_and_pages(store_url: str) -> None:
    store = await _store_with_entries(store_url)
    try:
        result = await store.audit.verify()
        assert result.ok and result.entries == 5
        denied = await store.audit.page(decision="DENY")
        assert [entry.resource for entry in denied] == ["Lot::B0", "Lot::B3"]
        second_page = await store.audit.page(after=2, limit=2)
        assert [entry.seq for entry in second_page] == [3, 4]
        assert second_page[0].prev_hash == (await store.audit.page(after=1, limit=1))[0].hash
    finally:
        await store.aclose()


async def test_entries_appended_together_are_chained_in_order_and_never_interleaved(store_url: str) -> None:
    """A recall's decisions go in one transaction per batch of lots; the chain is the same as one by one."""
    store = await _store_with_entries(store_url, count=1)

    def batch(name: str, size: int) -> list[dict]:
        return [entry_row(actor=name, action="placeRecallHold", resource=f"Lot::{name}{i}", decision="ALLOW",
                          reason="test", plants=["P100"]) for i in range(size)]  # fmt: skip

    try:
        single = store.audit.append(actor="c", action="x", resource="Lot::c", decision="ALLOW", reason="t")
        await asyncio.gather(store.audit.append_many(batch("a", 40)), store.audit.append_many(batch("b", 40)), single)
        entries = await store.audit.page(limit=100)
        assert [e.seq for e in entries] == list(range(1, 83))
        assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(entries))
        actors = [e.actor for e in entries[1:]]
        for name in ("a", "b"):  # each batch in one piece, in the order given
            start = actors.index(name)
            assert [e.resource for e in entries[1 + start : 41 + start]] == [f"Lot::{name}{i}" for i in range(40)]
        assert entries[5].plants == ("P100",)
        assert (await store.audit.verify()).ok
        async with store.engine.begin() as conn:
            await conn.execute(text("UPDATE audit_log SET reason = 'edited' WHERE seq = 20"))
        assert (await store.audit.verify()).first_bad == 20
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        (["UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3"], 3),
        (["DELETE FROM audit_log WHERE seq = 2"], 3),
        (
            [
                "UPDATE audit_log SET seq = -2 WHERE seq = 2",
                "UPDATE audit_log SET seq = 2 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = -2",
            ],
            2,
        ),
        (["UPDATE audit_log SET decision = CASE decision WHEN 'ALLOW' THEN 'DENY' ELSE 'ALLOW' END WHERE seq = 5"], 5),
    ],
    ids=["edited", "removed", "reordered", "decision-flipped"],
)
async def test_tampering_is_detected_and_named(store_url: str, tamper: list[str], first_bad: int) -> None:
    store = await _store_with_entries(store_url)
    try:
        async with store.engine.begin() as conn:
            for statement in tamper:
                await conn.execute(text(statement))
        result = await store.audit.verify()
        assert not result.ok
        assert result.first_bad == first_bad, result
    finally:
        await store.aclose()


def test_cli_verify_reports_intact_and_tampered(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"

    async def write_then(statement: str | None) -> None:
        store = await (_store_with_entries(url) if statement is None else Store.open(url))
        if statement:
            async with store.engine.begin() as conn:
                await conn.execute(text(statement))
        await store.aclose()

    env = dict(os.environ, LOTGRAPH_STORE_URL=url)
    command = [str(Path(sys.executable).parent / "lotgraph"), "audit", "verify"]
    asyncio.run(write_then(None))
    intact = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert intact.returncode == 0 and "5 entries" in intact.stdout
    asyncio.run(write_then("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 4"))
    tampered = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert tampered.returncode == 1
    assert "#4" in tampered.stdout


async def test_entries_record_the_plants_of_their_lots_and_scoped_pages_show_only_those(store_url: str) -> None:
    store = await _store_with_entries(store_url, count=2)  # about no lot, hashed as entries always were
    try:
        for resource, plants in (("Lot::A", {"P100"}), ("Lot::B", {"P200"}), ("Operation::R", {"P100", "P200"})):
            await store.audit.append(actor="qe", action="placeQualityHold", resource=resource, decision="ALLOW",
                                     reason="test", plants=plants, suppliers={"17300001"})  # fmt: skip
        assert (await store.audit.verify()).ok

        async def seen(plants: set[str] | None, **paging: int) -> list[str]:
            return [entry.resource for entry in await store.audit.page(plants=plants, **paging)]

        assert await seen({"P100"}) == ["Lot::A"]
        assert await seen({"P100", "P200"}) == ["Lot::A", "Lot::B", "Operation::R"]
        assert await seen({"P100", "P200"}, after=3, limit=1) == ["Lot::B"], "filtered before the limit"
        assert await seen(set()) == []
        assert len(await seen(None)) == 5
        entry = (await store.audit.page(plants={"P200", "P100"}, after=4))[0]
        assert entry.plants == ("P100", "P200") and entry.suppliers == ("17300001",)
        async with store.engine.begin() as conn:
            await conn.execute(text("UPDATE audit_log SET plants = '|P100|' WHERE seq = 5"))
        result = await store.audit.verify()
        assert result.first_bad == 5, "a widened scope is an edit"
    finally:
        await store.aclose()
