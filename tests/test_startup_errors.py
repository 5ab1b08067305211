"""What an operator sees when lotgraph cannot start: one line naming the setting (environment variable or
config-file key) and what is wrong, exit code 2, never a traceback; a store is never created by inspecting it."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import __version__
from gateway.servers import free_block

LOTGRAPH = str(Path(sys.executable).parent / "lotgraph")


def _lotgraph(*args: str, cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LOTGRAPH_")}
    return subprocess.run(
        [LOTGRAPH, *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=timeout
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "names", "says"),
    [
        ({}, "LOTGRAPH_AUTH__JWKS_URL or LOTGRAPH_AUTH__KEY_FILE", "no keys to verify tokens"),
        ({"LOTGRAPH_MODE": "prod"}, "LOTGRAPH_MODE", "'development' or 'production'"),
        ({"LOTGRAPH_PORT": "abc"}, "LOTGRAPH_PORT", "integer"),
        ({"LOTGRAPH_AUTH__KEY_FILE": "/nonexistent/key.pem"}, "LOTGRAPH_AUTH__KEY_FILE", "No such file"),
        ({"LOTGRAPH_CONFIG": "/nonexistent/lotgraph.yaml"}, "LOTGRAPH_CONFIG", "No such file"),
        (
            {
                "LOTGRAPH_MODE": "development",
                "LOTGRAPH_STORE_URL": "postgresql+asyncpg://lotgraph:hunter2@127.0.0.1:1/x",
            },
            "LOTGRAPH_STORE_URL",
            "cannot open the store at postgresql+asyncpg://lotgraph:***@127.0.0.1:1/x",
        ),
        ({"LOTGRAPH_MODE": "development", "LOTGRAPH_STORE_URL": "nosuchdb://x"}, "LOTGRAPH_STORE_URL", "not a usable"),
        (
            {
                "LOTGRAPH_MODE": "development",
                "LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__URL": "https://pager.example/api",
                "LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__SECRET": "whsec_aHVudGVyMg==",
                "LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__EVENTS": '[{"type": "InspectionCompleted", "passed": false}]',
            },
            "LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__SECRET",
            "must be a Standard Webhooks secret",
        ),
        (
            {
                "LOTGRAPH_MODE": "development",
                "LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__URL": "https://pager.example/api",
                "LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__SECRET": "whsec_" + "aHVudGVyMg" * 4,
                "LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__EVENTS": '[{"type": "InspectionFailed"}]',
            },
            "LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__EVENTS[0].type",
            "'InspectionCompleted'",
        ),
    ],
)
def test_run_refuses_a_bad_setting_in_one_line_naming_it(
    tmp_path: Path, env: dict[str, str], names: str, says: str
) -> None:
    line = _one_line(_lotgraph("run", cwd=tmp_path, **env))
    assert line.startswith(f"lotgraph: {names}: "), line
    assert says in line
    assert "hunter2" not in line and "aHVudGVyMg" not in line


def test_a_config_file_key_is_named_by_its_file(tmp_path: Path) -> None:
    config = tmp_path / "lotgraph.yaml"
    config.write_text("mode: development\nsources:\n  wms:\n    version: two\nnot_a_setting: 1\n")
    line = _one_line(_lotgraph("run", cwd=tmp_path, LOTGRAPH_CONFIG=str(config)))
    assert line.startswith(f"lotgraph: sources.wms.version in {config}: "), line
    config.write_text("mode: development\nnot_a_setting: 1\n")
    line = _one_line(_lotgraph("run", cwd=tmp_path, LOTGRAPH_CONFIG=str(config)))
    assert line == f"lotgraph: not_a_setting in {config}: is not a setting lotgraph knows (got 1)"
    config.write_text("mode: [development\n")
    assert "is not valid YAML" in _one_line(_lotgraph("run", cwd=tmp_path, LOTGRAPH_CONFIG=str(config)))


def test_run_logs_what_it_runs_with(tmp_path: Path) -> None:
    port = free_block(1)
    process = subprocess.Popen(
        [LOTGRAPH, "run", "--port", str(port)], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LOTGRAPH_MODE": "development", "LOTGRAPH_SOURCES__WMS__VERSION": "1"},
    )  # fmt: skip
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if "Application startup complete" in line:
            break
    process.terminate()
    process.wait(timeout=30)
    log = "".join(seen)
    assert f"lotgraph {__version__} in development mode: store sqlite+aiosqlite:///.lotgraph/lotgraph.db" in log
    assert "bus memory, cache memory, policy set " in log
    assert "source wms at http://127.0.0.1:8003/, API version 1: wms.handling_units.receive@1, wms.stock.close@1" in log


def test_audit_verify_never_creates_a_store_and_names_the_one_it_checked(tmp_path: Path) -> None:
    line = _one_line(_lotgraph("audit", "verify", cwd=tmp_path))
    assert line == "lotgraph: LOTGRAPH_STORE_URL: no store at sqlite+aiosqlite:///.lotgraph/lotgraph.db"
    assert not (tmp_path / ".lotgraph").exists()
    not_ours = tmp_path / "other.db"
    with sqlite3.connect(not_ours) as db:
        db.execute("CREATE TABLE t (x)")
    url = f"sqlite+aiosqlite:///{not_ours}"
    line = _one_line(_lotgraph("audit", "verify", cwd=tmp_path, LOTGRAPH_STORE_URL=url))
    assert line == f"lotgraph: LOTGRAPH_STORE_URL: {url} is not a lotgraph store (no audit log)"


def test_demo_with_a_busy_port_exits_naming_it(tmp_path: Path) -> None:
    port = free_block(6)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port + 3))
        busy.listen()
        line = _one_line(_lotgraph("demo", "--port", str(port), "--lots", "1000", cwd=tmp_path, timeout=120))
    assert line.startswith("lotgraph: --port: WMS cannot listen on 127.0.0.1:"), line
    assert str(port + 3) in line and "in use" in line
    too_small = _lotgraph("demo", "--lots", "200", cwd=tmp_path)
    assert too_small.returncode == 2 and "a plant needs at least 1000 lots" in too_small.stderr


def test_version_and_token_help(tmp_path: Path) -> None:
    assert _lotgraph("--version", cwd=tmp_path).stdout.strip() == f"lotgraph {__version__}"
    help_text = " ".join(_lotgraph("token", "--help", cwd=tmp_path).stdout.split())
    assert "Development mode only" in help_text
    for role in ("quality_engineer", "qa_manager", "plant_operator", "supplier", "auditor", "portal_reader"):
        assert role in help_text
    refused = _lotgraph("token", "--role", "qa_manager", cwd=tmp_path)
    assert refused.returncode != 0 and "refused in production mode" in refused.stderr
