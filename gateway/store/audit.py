"""The append-only, hash-chained audit log.

Each entry's hash covers its content and the previous entry's hash, so editing, removing or
reordering any entry breaks the chain from that point on, and `verify` names the first bad one.
Appends are serialized (`engine.serialized`: an advisory lock on PostgreSQL, the write lock taken at BEGIN on
SQLite) so replicas, or two processes on one SQLite file, never fork the chain.

An entry about lots records their plants and suppliers, hashed with the rest (entries written before these
columns existed, and entries about no lot, hash as they always did). A plant-scoped auditor reads only entries
whose plants are all theirs; entries about no lot are for all-plants auditors only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.engine import serialized
from gateway.store.tables import audit_log, joined, record, split_joined, utc, within

GENESIS = "0" * 64
_LOCK_ID = 0x6C6F7467  # "lotg"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    resource: str
    decision: str
    policy_ids: tuple[str, ...]
    reason: str
    details: Mapping[str, Any]
    correlation_id: str | None
    prev_hash: str
    hash: str
    plants: tuple[str, ...] | None = None  # of the lots the entry is about; None: about no lot
    suppliers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Verification:
    entries: int
    first_bad: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def entry_hash(prev_hash: str, seq: int, content: Mapping[str, Any]) -> str:
    canonical = json.dumps({"prev": prev_hash, "seq": seq, **content}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _content(row: Mapping[str, Any]) -> dict[str, Any]:
    scope = {name: split_joined(row[name]) for name in ("plants", "suppliers") if row.get(name) is not None}
    return {
        **scope,
        "at": utc(row["at"]).isoformat(),
        "actor": row["actor"],
        "action": row["action"],
        "resource": row["resource"],
        "decision": row["decision"],
        "policy_ids": list(row["policy_ids"]),
        "reason": row["reason"],
        "details": row["details"],
        "correlation_id": row["correlation_id"],
    }


class AuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._local = asyncio.Lock()

    async def append(self, **fields: Any) -> AuditEntry:
        """Append one entry (`fields` as for `entry_row`)."""
        (entry,) = await self.append_many([entry_row(**fields)])
        return entry

    async def append_many(self, rows: Sequence[dict[str, Any]]) -> list[AuditEntry]:
        """Append entries (`entry_row`) in one transaction, in order: a recall's decisions about a batch of lots
        cost one turn at the chain's lock and one commit, not one per lot."""
        if not rows:
            return []
        async with self._local, serialized(self.engine, _LOCK_ID) as conn:
            last = (
                await conn.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1))
            ).first()
            seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
            chained = []
            for row in rows:
                seq += 1
                linked = {**row, "seq": seq, "prev_hash": prev}
                linked["hash"] = prev = entry_hash(prev, seq, _content(row))
                chained.append(linked)
            await conn.execute(audit_log.insert(), chained)
        return [_entry(row) for row in chained]

    async def page(
        self, *, actor: str | None = None, action: str | None = None, resource: str | None = None,
        decision: str | None = None, after: int = 0, limit: int = 50, plants: Collection[str] | None = None,
    ) -> list[AuditEntry]:  # fmt: skip
        """Entries after sequence number `after`, oldest first, matching every filter given; with `plants`, only
        entries about lots all of those plants (filtered in the query, so pages stay full)."""
        conditions = [audit_log.c.seq > after]
        if plants is not None:
            conditions.append(within(audit_log.c.plants, plants))
        for column, value in (("actor", actor), ("action", action), ("resource", resource), ("decision", decision)):
            if value is not None:
                conditions.append(audit_log.c[column] == value)
        query = select(audit_log).where(and_(*conditions)).order_by(audit_log.c.seq).limit(limit)
        async with self.engine.connect() as conn:
            return [_entry(row._mapping) for row in await conn.execute(query)]

    async def verify(self) -> Verification:
        """Walk the chain from the start; the first entry whose link or content does not check out is named."""
        prev, expected_seq, count = GENESIS, 1, 0
        async with self.engine.connect() as conn:
            result = await conn.stream(select(audit_log).order_by(audit_log.c.seq))
            async for row in result.mappings():
                count += 1
                if row["seq"] != expected_seq:
                    return Verification(count, row["seq"], f"entry {expected_seq} is missing before entry {row['seq']}")
                if row["prev_hash"] != prev:
                    return Verification(count, row["seq"], "does not follow the entry before it (removed or reordered)")
                if entry_hash(prev, row["seq"], _content(row)) != row["hash"]:
                    return Verification(count, row["seq"], "content does not match its hash (edited)")
                prev, expected_seq = row["hash"], expected_seq + 1
        return Verification(count, None, None)


def entry_row(
    *, actor: str, action: str, resource: str, decision: str, reason: str, policy_ids: Sequence[str] = (),
    details: Mapping[str, Any] | None = None, correlation_id: str | None = None, plants: Iterable[str] | None = None,
    suppliers: Iterable[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """An entry to append (`AuditLog.append_many`), stamped now; `plants` and `suppliers` are those of the lots it is
    about (None: about no lot)."""
    return {
        "plants": joined(plants),
        "suppliers": joined(suppliers if suppliers is not None or plants is None else ()),
        "at": datetime.now(UTC),
        "actor": actor,
        "action": action,
        "resource": resource,
        "decision": decision,
        "policy_ids": list(policy_ids),
        "reason": reason,
        "details": json.loads(json.dumps(dict(details or {}), default=str)),
        "correlation_id": correlation_id,
    }


def _entry(row: Mapping[str, Any]) -> AuditEntry:
    return record(
        AuditEntry, row, at=utc(row["at"]), policy_ids=tuple(row["policy_ids"]), plants=split_joined(row["plants"]),
        suppliers=split_joined(row["suppliers"]),
    )  # fmt: skip
