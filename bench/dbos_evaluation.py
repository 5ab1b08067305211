"""Issue 13: DBOS Transact measured against what lotgraph's operation executor has to do (docs/architecture.md,
Decisions, "One home-made executor"). Not part of `make bench`, and dbos is not a project dependency:

    .venv/bin/pip install dbos            # measured with dbos 3.4.0
    .venv/bin/python -m bench.dbos_evaluation [--postgres URL]

Without `--postgres` (a `postgresql://` URL of a database it may create a `dbos` schema in) it starts a throwaway
PostgreSQL through `tests.services.postgres()`. One line per finding; about 90 s in all.
Workflows call a loopback HTTP server run by this process, which counts what each step really did, so "ran once"
is what the server saw, not what DBOS says. Child processes (replicas, crashes) are this module run with `child`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, SetEnqueueOptions, SetWorkflowID
from dbos._serialization import DBOSPortableJSON

HITS = os.environ.get("DBOS_EVAL_HITS", "")  # the parent's counting server, inherited by child processes
CRASH = os.environ.get("DBOS_EVAL_CRASH", "")  # a workflow id: this process is SIGKILLed after its second step
SLOW = os.environ.get("DBOS_EVAL_SLOW", "")  # a step's path: it takes 3 s after its call (a live but slow replica)
LOT_QUEUE = "lots"


# --- the workflows ------------------------------------------------------------------------------------------------


@DBOS.step()
async def call(path: str) -> str:
    async with httpx2.AsyncClient() as client:
        (await client.post(f"{HITS}/{path}", headers={"x-thread": threading.current_thread().name})).raise_for_status()
    if path == SLOW:
        await asyncio.sleep(3)
    return path


@DBOS.workflow()
async def three_calls(wf: str) -> list[str]:
    done = [await call(f"{wf}/1"), await call(f"{wf}/2")]
    if wf == CRASH:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between the second and the third step
    done.append(await call(f"{wf}/3"))
    return done


@DBOS.step()
async def change_lot(wf: str) -> None:
    """Stands for the steps of an operation on one lot: what the server sees must never interleave per lot."""
    async with httpx2.AsyncClient() as client:
        await client.post(f"{HITS}/{wf}/start")
        await asyncio.sleep(0.3)
        await client.post(f"{HITS}/{wf}/end")


@DBOS.workflow()
async def on_lot(wf: str) -> None:
    await change_lot(wf)


@DBOS.step()
async def noop(i: int) -> int:
    return i


@DBOS.workflow()
async def noop1() -> int:
    return await noop(1)


@DBOS.workflow()
async def noop3() -> int:
    return await noop(1) + await noop(2) + await noop(3)


def config(url: str, executor: str = "local") -> DBOSConfig:
    # A fixed application version: by default it is a hash of every workflow's source, and a PENDING workflow is
    # recovered only by an executor of the same version (so by default, not after any deploy that edits one).
    return DBOSConfig(name="lotgraph-eval", system_database_url=url, executor_id=executor, application_version="eval",
                      log_level="ERROR", serializer=DBOSPortableJSON)  # fmt: skip


# --- the counting server ------------------------------------------------------------------------------------------


class Hits:
    """Loopback HTTP server recording every POST's path, time and calling thread."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float, str]] = []  # path, when, the calling thread
        hits = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hits.seen.append((self.path.lstrip("/"), time.monotonic(), self.headers.get("x-thread", "")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, prefix: str) -> dict[str, int]:
        return dict(Counter(path for path, _, _ in self.seen if path.startswith(prefix)))


def child(hits: Hits, *args: str, crash: str = "", slow: str = "", wait: bool = True) -> subprocess.Popen[str]:
    env = {**os.environ, "DBOS_EVAL_HITS": hits.url, "DBOS_EVAL_CRASH": crash, "DBOS_EVAL_SLOW": slow}
    process = subprocess.Popen([sys.executable, "-m", "bench.dbos_evaluation", "child", *args], env=env, text=True,
                               stdout=subprocess.PIPE)  # fmt: skip
    if wait:
        process.wait(60)
    return process


async def child_main(url: str, executor: str, action: str, arg: str) -> None:
    """One replica: launch (which recovers this executor's PENDING workflows), act, and stay up `serve` seconds."""
    DBOS(config=config(url, executor))
    DBOS.launch()
    if action == "run":  # start workflow `arg` (the idempotency key is its id) and wait for it
        with SetWorkflowID(arg):
            handle = await DBOS.start_workflow_async(three_calls, arg)
        print(await handle.get_result(), flush=True)
    elif action == "resume":  # take over workflow `arg` by hand, as an operator would for a replica that is gone
        await asyncio.to_thread(DBOS.resume_workflow, arg)
        print(await (await DBOS.retrieve_workflow_async(arg)).get_result(), flush=True)
    elif action == "lots":  # enqueue two operations on lot L1 and one on L2, per-lot partitioned queue
        await DBOS.register_queue_async(LOT_QUEUE, partition_concurrency=1, polling_interval_sec=0.1)
        handles = []
        for lot in ("L1", "L1", "L2"):
            with SetEnqueueOptions(queue_partition_key=lot):
                wf = f"{lot}/{executor}-{uuid.uuid4().hex[:6]}"
                handles.append(await DBOS.enqueue_workflow_async(LOT_QUEUE, on_lot, wf))
        await asyncio.gather(*(h.get_result() for h in handles))
        # The other replica may have dequeued some of ours and we some of its: destroying this DBOS while they run
        # would leave them PENDING under an executor id that never comes back (see "orphan" below).
        await asyncio.sleep(3)
    elif action == "serve":
        await asyncio.sleep(float(arg))
    DBOS.destroy()


# --- experiments --------------------------------------------------------------------------------------------------


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


async def embedded(tmp: Path) -> None:
    """SQLite, no server, inside a running asyncio loop (a lifespan handler would do the same); async workflows."""
    from gateway.store import Store
    from gateway.store.operations import OperationStore, StepPlan

    store_file = tmp / "lotgraph.db"
    store = await Store.open(f"sqlite+aiosqlite:///{store_file}")  # lotgraph's own store, migrated
    DBOS(config=config(f"sqlite:///{store_file}"))  # DBOS in the same file as our tables
    launch = timed(DBOS.launch)
    result = await (await DBOS.start_workflow_async(noop3)).get_result()
    op, _ = await OperationStore(store.engine).claim(
        kind="x", actor="a", idempotency_key="k", payload={}, steps=[StepPlan("qms", "L1", "hold")], correlation_id=None
    )
    listed = sqlite3.connect(store_file).execute("SELECT name FROM sqlite_master WHERE type='table'")
    tables = sorted(row[0] for row in listed)
    destroy = timed(DBOS.destroy)
    await store.engine.dispose()
    print(f"embedded: async workflow on SQLite inside asyncio -> {result}; launch {launch * 1000:.0f} ms, destroy "
          f"{destroy * 1000:.0f} ms; shares lotgraph's SQLite file (our claim worked: {op.state.value})")  # fmt: skip
    print(f"embedded: tables in the shared file: {tables}")


async def many_gateways(tmp: Path, pg: str) -> None:
    """The test suite runs several gateways (each with its own store) in one process at once."""
    first = DBOS(config=config(f"sqlite:///{tmp}/gateway-a.sqlite"))
    second = DBOS(config=config(f"sqlite:///{tmp}/gateway-b.sqlite"))
    DBOS.launch()
    await (await DBOS.start_workflow_async(noop3)).get_result()
    DBOS.destroy()
    print(
        f"gateways: DBOS(config=B) after DBOS(config=A) returns the same object: {first is second}; "
        f"B's database exists: {(tmp / 'gateway-b.sqlite').exists()} (B's config is ignored, silently)"
    )
    for name, url in (("SQLite", f"sqlite:///{tmp}/cycles.sqlite"), ("PostgreSQL", pg)):
        launches, destroys = [], []
        for _ in range(5):
            DBOS(config=config(url))
            launches.append(timed(DBOS.launch))
            await (await DBOS.start_workflow_async(noop3)).get_result()
            destroys.append(timed(DBOS.destroy))
        print(f"gateways: {name} launch {', '.join(f'{t * 1000:.0f}' for t in launches)} ms (first migrates), "
              f"destroy {statistics.median(destroys) * 1000:.0f} ms median")  # fmt: skip


def crash_recovery(hits: Hits, url: str, label: str) -> None:
    """kill -9 between steps 2 and 3, then restart the same executor: each step must have run exactly once."""
    wf = f"crash-{label}-{uuid.uuid4().hex[:6]}"
    killed = child(hits, url, "a", "run", wf, crash=wf)
    after_kill = hits.count(wf)
    child(hits, url, "a", "serve", "4")  # recovery alone: the restarted replica is not asked for the workflow
    threads = {thread for path, _, thread in hits.seen if path == f"{wf}/3"}
    print(f"crash ({label}): exit {killed.returncode} after {after_kill}; executor a restarted: server saw "
          f"{hits.count(wf)}, step 3 called from {threads}")  # fmt: skip


def _until_step(hits: Hits, wf: str, step: int, within: float = 30) -> None:
    """Until the counting server has seen `step` of workflow `wf` start (at most `within` seconds)."""
    deadline = time.monotonic() + within
    while f"{wf}/{step}" not in hits.count(wf) and time.monotonic() < deadline:
        time.sleep(0.05)


def replicas(hits: Hits, pg: str) -> None:
    # The same workflow id (our idempotency key) started at once on two replicas.
    wf = f"dup-{uuid.uuid4().hex[:6]}"
    both = [child(hits, pg, executor, "run", wf, wait=False) for executor in ("a", "b")]
    answers = [p.communicate(timeout=60)[0].strip() for p in both]
    print(f"replicas: one id started on two replicas -> answers {answers}; server saw {hits.count(wf)}")

    # Replica a dies mid-workflow and never comes back; replica b keeps running.
    wf = f"orphan-{uuid.uuid4().hex[:6]}"
    child(hits, pg, "a", "run", wf, crash=wf)
    child(hits, pg, "b", "serve", "8")
    print(f"replicas: a killed after {hits.count(wf)}; b (a live replica, launched after) in 8 s ran {hits.count(wf)}")
    took = timed(lambda: child(hits, pg, "b", "resume", wf))
    print(f"replicas: b resuming it by hand (DBOS.resume_workflow) -> server saw {hits.count(wf)} ({took:.1f} s)")

    # The same by-hand takeover while a is alive but slow in step 2: nothing tells a live replica from a dead one.
    wf = f"alive-{uuid.uuid4().hex[:6]}"
    slow = child(hits, pg, "a", "run", wf, slow=f"{wf}/2", wait=False)
    _until_step(hits, wf, 2)
    child(hits, pg, "b", "resume", wf, slow=f"{wf}/2")
    slow.wait(60)
    print(f"replicas: b resuming a workflow that live replica a is running -> server saw {hits.count(wf)}")

    # Both replicas left at DBOS's default executor id ("local"): the second one's start-up recovery.
    wf = f"local-{uuid.uuid4().hex[:6]}"
    slow = child(hits, pg, "local", "run", wf, slow=f"{wf}/2", wait=False)
    _until_step(hits, wf, 2)
    child(hits, pg, "local", "serve", "5", slow=f"{wf}/2")
    slow.wait(60)
    print(f"replicas: a second replica with the same executor id starting while the first runs -> {hits.count(wf)}")

    # Per-lot turns from a partitioned queue, two replicas enqueueing at once.
    start = len(hits.seen)
    for p in [child(hits, pg, executor, "lots", "-", wait=False) for executor in ("a", "b")]:
        p.wait(60)
    spans: dict[str, list[float]] = {}
    for path, at, _ in hits.seen[start:]:
        spans.setdefault(path.rsplit("/", 1)[0], []).append(at)
    overlap = {lot: _max_overlap([s for k, s in spans.items() if k.startswith(lot)]) for lot in ("L1", "L2")}
    print(f"replicas: partitioned queue (partition_concurrency=1), 4 operations on L1, 2 on L2 from 2 replicas: "
          f"most at once per lot {overlap}")  # fmt: skip


def _max_overlap(spans: list[list[float]]) -> int:
    edges = sorted([(s[0], 1) for s in spans] + [(s[-1], -1) for s in spans])
    running = most = 0
    for _, delta in edges:
        running += delta
        most = max(most, running)
    return most


async def cost(tmp: Path, pg: str, n: int = 200) -> None:
    """n workflows of 3 no-op steps, one after another (latency) and 16 at a time (throughput), beside our
    executor's run of an operation of 3 no-op steps over the same database (claim, leases, steps, audit entry)."""
    for name, url, ours in (("SQLite", f"sqlite:///{tmp}/cost.sqlite", f"sqlite+aiosqlite:///{tmp}/ours.db"),
                            ("PostgreSQL", pg, pg.replace("postgresql://", "postgresql+asyncpg://"))):  # fmt: skip
        DBOS(config=config(url))
        DBOS.launch()
        figures = [await _measure(n, lambda w=w: _dbos_workflow(w)) for w in (noop1, noop3)]
        DBOS.destroy()
        print(f"cost: DBOS on {name}, 1 step: {figures[0]}; 3 steps: {figures[1]}")
        figures = [await _measure(n, await _our_executor(ours, steps)) for steps in (1, 3)]
        print(f"cost: lotgraph Executor on {name}, 1 step: {figures[0]}; 3 steps: {figures[1]}")


async def _dbos_workflow(workflow: Callable[[], Any]) -> None:
    await (await DBOS.start_workflow_async(workflow)).get_result()


async def _measure(n: int, run: Callable[[], Any]) -> str:
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        await run()
        latencies.append(time.perf_counter() - start)
    limit = asyncio.Semaphore(16)

    async def one() -> None:
        async with limit:
            await run()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    rate = n / (time.perf_counter() - start)
    q = statistics.quantiles(latencies, n=20)
    return f"p50 {statistics.median(latencies) * 1000:.1f} ms, p95 {q[18] * 1000:.1f} ms, {rate:.0f} workflows/s at 16"


async def _our_executor(url: str, steps: int) -> Callable[[], Any]:
    """lotgraph's Executor as a mutation drives it (claim, then run), with 3 steps that do nothing upstream."""
    from gateway.operations import executor as executor_module
    from gateway.operations.steps import Outcome
    from gateway.store import Store
    from gateway.store.operations import OperationStore, StepPlan

    async def nothing(*_: Any) -> Outcome:
        return Outcome("noop.v1", {})

    executor_module.RUNNERS.update({f"s{i}.noop": nothing for i in (1, 2, 3)})  # this benchmark's process only

    class Upstream:  # the executor asks it to invalidate cached reads, and for the lots' plants (for the audit)
        class cache:  # the attribute the executor reads
            @staticmethod
            async def invalidate_lot(_: str) -> None:
                pass

        @staticmethod
        async def call(*_: Any) -> list[Any]:
            return []

    store = await Store.open(url)
    operations = OperationStore(store.engine)
    executor = executor_module.Executor(Upstream(), operations, store.audit)  # type: ignore[arg-type]

    async def run() -> None:
        plans = [StepPlan(f"s{i}", f"L{uuid.uuid4().hex}", "noop") for i in range(1, steps + 1)]
        op, _ = await operations.claim(kind="bench", actor="bench", idempotency_key=uuid.uuid4().hex, payload={},
                                       steps=plans, correlation_id=None)  # fmt: skip
        assert (await executor.run(op.id)).state.value == "COMPLETED"

    return run


async def pickles(tmp: Path) -> None:
    """With a JSON serializer configured, does a row someone else wrote as a pickle still get unpickled?"""
    url, marker = f"sqlite:///{tmp}/pickles.sqlite", tmp / "code-ran"
    DBOS(config=config(url))
    DBOS.launch()
    wf = (await DBOS.start_workflow_async(noop3)).workflow_id
    await (await DBOS.retrieve_workflow_async(wf)).get_result()
    planted = pickle.dumps(_Planted(str(marker)))
    import base64

    with sa.create_engine(url).begin() as db:  # anyone who can write the system database
        output = {"o": base64.b64encode(planted).decode(), "w": wf}
        db.execute(sa.text("UPDATE workflow_output SET output = :o WHERE workflow_uuid = :w"), output)
        db.execute(sa.text("UPDATE workflow_status SET serialization = 'py_pickle' WHERE workflow_uuid = :w"), output)
        serialization = db.execute(sa.text("SELECT serialization FROM operation_outputs LIMIT 1")).scalar()
    await asyncio.to_thread(DBOS.list_workflows)
    DBOS.destroy()
    print(f"pickles: configured serializer {DBOSPortableJSON.name()} (step rows tagged {serialization!r}); a row "
          f"tagged 'py_pickle' in the system database ran code when listed: {marker.exists()}")  # fmt: skip


class _Planted:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.path), f"unpickled at {datetime.now(UTC)}"))


@contextmanager
def postgres_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from tests.services import postgres

    with postgres() as url:  # postgresql+asyncpg://... ; DBOS drives psycopg 3
        yield url.replace("postgresql+asyncpg://", "postgresql://")


async def main(pg_given: str | None) -> None:
    import dbos

    print(f"dbos {getattr(dbos, '__version__', None) or _version()} on Python {sys.version.split()[0]}")
    hits = Hits()
    with tempfile.TemporaryDirectory(prefix="dbos-eval-") as directory, postgres_url(pg_given) as pg:
        tmp = Path(directory)
        await embedded(tmp)
        await pickles(tmp)
        await many_gateways(tmp, pg)
        crash_recovery(hits, f"sqlite:///{tmp}/crash.sqlite", "SQLite")
        crash_recovery(hits, pg, "PostgreSQL")
        replicas(hits, pg)
        await cost(tmp, pg)


def _version() -> str:
    from importlib.metadata import version

    return version("dbos")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        asyncio.run(child_main(*sys.argv[2:6]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--postgres", help="postgresql:// URL of a database DBOS may create its schema in")
        asyncio.run(main(parser.parse_args().postgres))
