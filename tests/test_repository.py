"""Promises about the repository itself: its architecture page points only at files it holds, and its package
metadata is in the current form (an SPDX license string, which setuptools no longer warns about)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_architecture_page_names_only_files_of_the_repository() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert "../" not in page and "http://" not in page and "https://" not in page
    named = set(
        re.findall(r"`((?:gateway|schema|resolvers|policies|simulators|tests|deploy|bench|docs)/[\w./]*)`", page)
    )
    assert len(named) > 30, "the page maps the code"
    missing = sorted(path for path in named if not _exists(path))
    assert not missing, f"named but not in the repository: {missing}"


def test_the_license_is_an_spdx_expression() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


def _exists(named: str) -> bool:
    """A file or folder, or `package/module.attribute` naming something in `package/module.py`."""
    module = named.rsplit(".", 1)[0]
    return (ROOT / named.rstrip("/")).exists() or (ROOT / f"{module}.py").exists()
