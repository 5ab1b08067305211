"""schema/schema.graphql is the live schema's SDL, as `make schema` writes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from schema.published import PUBLISHED, live_sdl

LOTGRAPH = Path(sys.executable).with_name("lotgraph")


def test_published_sdl_is_the_live_schema() -> None:
    published = PUBLISHED.read_text(encoding="utf-8") if PUBLISHED.is_file() else ""
    assert published == live_sdl(), (
        "schema/schema.graphql differs from the live schema: run `make schema` and commit the file"
    )


def test_schema_write_writes_the_live_sdl(tmp_path: Path) -> None:
    target = tmp_path / "schema.graphql"
    done = subprocess.run(
        [LOTGRAPH, "--log-level", "warning", "schema", "write", "--output", target],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert target.read_text(encoding="utf-8") == live_sdl()
    assert done.stdout.strip() == f"wrote {target}"
