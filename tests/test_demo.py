"""`make run` from a fresh clone: `lotgraph demo` starts the plant and the gateway, every example in the README
works as written (its GraphQL queries anonymously and as the quality engineer, its shell commands, mutations
included, run by `sh` with the tokens they mint), the production shift's events reach a subscriber, and Ctrl-C
stops everything cleanly."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

from gateway.servers import free_block

ROOT = Path(__file__).resolve().parent.parent


README_PORT = 8000  # `make run`: the only thing in the README's commands the test changes (to a free port)
DEMO_PORT = re.compile(rf"localhost:{README_PORT // 10}(\d)")  # the gateway's, the systems' and the pager's ports


def _on(port: int, block: str) -> str:
    """A README block with the demo's ports (8000, 8001, ... 8006) moved to the test demo's (port, port + 1, ...)."""
    return DEMO_PORT.sub(lambda found: f"localhost:{port + int(found.group(1))}", block)


def readme_queries() -> list[str]:
    return re.findall(r"```graphql\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)


def readme_commands() -> list[str]:
    """The README's ```sh blocks that talk to a running demo (not the Quickstart's `make` lines)."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    return [block for block in blocks if DEMO_PORT.search(block)]


def _json_documents(text: str) -> list[Any]:
    """Every JSON document `text` holds one after another (one per curl)."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        while text[at].isspace():
            at += 1
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
    return documents


def _run_shell(block: str, cwd: Path, port: int) -> list[dict[str, Any]]:
    """A README block run by `sh` as written, in a directory laid out like the repository's root (`.venv/`,
    the demo's `.lotgraph/`), against the demo's port: the answers it printed."""
    return _json_documents(_shell_output(block, cwd, port))


def _shell_output(block: str, cwd: Path, port: int) -> str:
    script = _on(port, block)
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LOTGRAPH_")}
    done = subprocess.run(["sh", "-ec", script], cwd=cwd, env=clean, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (block, done.stdout, done.stderr)
    return done.stdout


def _assert_answered(answer: dict[str, Any], what: str) -> None:
    """Data for every field, and no error but the notice that a genealogy left lots out (the README says so)."""
    notices = [e for e in answer.get("errors", []) if e["extensions"]["code"] != "GENEALOGY_REDACTED"]
    assert not notices, (what, answer)
    assert answer["data"] and all(value is not None for value in answer["data"].values()), (what, answer)


def _subscribe_as_written(block: str, cwd: Path, port: int, within: float = 60) -> dict[str, Any]:
    """The README's streaming curl, as written: the first event it prints (then it is stopped, as Ctrl-C would)."""
    script = _on(port, block)
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LOTGRAPH_")}
    stream = subprocess.Popen(
        ["sh", "-ec", script], cwd=cwd, env=clean, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + within
    try:
        assert stream.stdout is not None
        event = None
        for line in stream.stdout:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "next":
                return json.loads(line.split(":", 1)[1])
            assert time.monotonic() < deadline, "no event in time"
        raise AssertionError(f"the stream ended without an event: {stream.wait()}")
    finally:
        os.killpg(stream.pid, signal.SIGTERM)
        stream.wait(timeout=10)


def _wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} not healthy after {timeout} s")


DEMO_SUPPLIER = "17300013"  # supplier of the demo's recall lot B2600060 (seed 42): the banner's supplier persona


def _first_event(url: str, token: str | None = None, wanted: Callable[[dict], bool] = lambda _: True) -> dict:
    """The first (`wanted`) plant event the demo's production shift produces, as a subscriber over SSE sees it."""
    query = "subscription { qualityEvents { cursor type source lotId supplier } }"
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with (
        httpx2.Client(timeout=30) as client,
        client.sse(url, method="POST", json={"query": query}, headers=headers) as events,
    ):
        for sse in events:
            if sse.event == "next" and wanted(event := json.loads(sse.data)["data"]["qualityEvents"]):
                return event
    raise AssertionError("the stream ended without an event")


def test_demo_serves_the_readme_examples_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    queries = readme_queries()
    assert len(queries) >= 3, "the README documents example queries"
    commands = readme_commands()
    (operating,) = [c for c in commands if "lotgraph ops" in c]
    commands.remove(operating)
    mutations = [c for c in commands if "mutation" in c]
    assert len(mutations) == 2 and "placeQualityHold" in mutations[0] and "releaseQualityHold" in mutations[1]
    # A directory laid out like the repository's root: the README's commands use `.venv/bin/lotgraph` and the
    # demo's `.lotgraph/` data directory, both relative to where `make run` runs.
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    port = free_block(7)
    lotgraph = Path(sys.executable).parent / "lotgraph"
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LOTGRAPH_")}
    process = subprocess.Popen(
        [str(lotgraph), "demo", "--port", str(port), "--shift-seconds", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=clean,
    )  # fmt: skip
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        for system_port in range(port + 1, port + 7):  # ERP, QMS, WMS, MES, LIMS, the supervisors' pager
            assert httpx2.get(f"http://127.0.0.1:{system_port}/_admin/stats").status_code == 200
        graphiql = httpx2.get(f"http://127.0.0.1:{port}/graphql", headers={"accept": "text/html"})
        assert "graphiql" in graphiql.text.lower()
        assert "Bearer ey" in graphiql.text, "the demo pre-fills GraphiQL's Headers tab with a token"
        # The personas the README names for its queries: anonymous (a portal reader) and the quality engineer.
        (quality_engineer,) = _run_shell(
            "LOTGRAPH_MODE=development .venv/bin/lotgraph token --role quality_engineer --plant P100 --plant P200"
            " | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().strip()))'",
            tmp_path, port,
        )  # fmt: skip
        for headers in ({}, {"authorization": f"Bearer {quality_engineer}"}):
            for query in queries:
                result = httpx2.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": query}, headers=headers, timeout=60
                ).json()
                _assert_answered(result, query)
        # The shell examples in order, each as written: hold as the quality engineer, release as a QA manager
        # with a fresh MFA sign-in, then the supplier's stream (which replays the hold's events).
        hold, release = (_run_shell(block, tmp_path, port) for block in mutations)
        assert len(hold) == 1 and len(release) == 1, (hold, release)
        _assert_answered(hold[0], mutations[0])
        assert hold[0]["data"]["placeQualityHold"]["state"] == "COMPLETED", hold
        _assert_answered(release[0], mutations[1])
        released = release[0]["data"]["releaseQualityHold"]
        assert released["state"] == "COMPLETED" and released["signature"]["meaning"] == "RELEASE", released
        # The operator's terminal: a table of what is pending, then the exception queue as JSON.
        table, _, listed = _shell_output(operating, tmp_path, port).partition("shown\n")
        assert "kind" in table and "state" in table, table
        assert isinstance(json.loads(listed), list), listed
        (pages,) = [c for c in commands if "/_admin/pages" in c]
        (stream,) = [c for c in commands if c not in mutations and c != pages]
        event = _subscribe_as_written(stream, tmp_path, port)
        _assert_answered(event, stream)
        assert event["data"]["qualityEvents"]["lotId"], event
        event = _first_event(f"http://127.0.0.1:{port}/graphql")
        assert event["source"] in {"qms", "mes", "erp", "lotgraph"} and event["lotId"], event
        # The supplier persona (the recall lot's supplier, as the banner's) sees the shift change its own lots.
        (supplier,) = _run_shell(
            f"LOTGRAPH_MODE=development .venv/bin/lotgraph token --role supplier --supplier {DEMO_SUPPLIER}"
            " | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().strip()))'",
            tmp_path, port,
        )  # fmt: skip
        pool = concurrent.futures.ThreadPoolExecutor(1)  # bounded: the stream itself would wait forever
        try:
            gateway = f"http://127.0.0.1:{port}/graphql"
            # The shift opens and closes nonconformances on the supplier's lots; the opening is what is looked for.
            opened = pool.submit(
                _first_event, gateway, supplier, lambda e: (e["source"], e["type"]) == ("qms", "NONCONFORMANCE_OPENED")
            )
            event = opened.result(timeout=60)
        finally:
            pool.shutdown(wait=False)  # a stream still waiting ends with the demo, stopped below
        assert event["supplier"] == DEMO_SUPPLIER and event["type"] == "NONCONFORMANCE_OPENED", event
        # The supervisors' pager, as the README shows it, was told of the shift's quality failures (it keeps only
        # what its own secret verifies).
        deadline = time.monotonic() + 60
        while not (paged := _run_shell(pages, tmp_path, port)[0]["pages"]):
            assert time.monotonic() < deadline, "the supervisors' pager was told of nothing"
            time.sleep(1)
        assert {page["type"] for page in paged} <= {"InspectionCompleted", "NonconformanceOpened"}, paged
        assert all(page["message"]["data"]["lotId"] == page["lot_id"] for page in paged), paged
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}/graphql" in output, "the banner prints the gateway URL"
    assert "lotgraph token --role qa_manager --plant '*' --mfa" in output, "the banner says how to sign again"


def test_each_demo_run_forgets_the_previous_plants_operations(tmp_path: Path) -> None:
    """A repeated README idempotency key must not answer with an operation on a plant that is gone; the store of
    `lotgraph run` in the same directory is the operator's, never touched."""
    from gateway.demo import DEMO_STORE, demo_settings, fresh_store

    settings = demo_settings("127.0.0.1", 8000, "whsec_x").model_copy(update={"data_dir": tmp_path})
    assert settings.resolved_store_url.endswith(f"/{DEMO_STORE}")
    for name in (DEMO_STORE, f"{DEMO_STORE}-wal", "dev-signing-key.pem", "lotgraph.db"):
        (tmp_path / name).write_text("x")
    fresh_store(settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev-signing-key.pem", "lotgraph.db"]
