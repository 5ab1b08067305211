"""Imports only run downward: web shell -> schema -> resolvers -> gateway's domain -> policies.

Read from the source (every `import`, at any depth of a module, type-checking ones included), so a layer cannot
reach up even lazily."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The web shell lives in `gateway/` beside the domain: it serves the schema, so it imports it (and through the
# request context, resolvers). Nothing below it may import these modules (that would pull the schema in too).
WEB_SHELL = {
    "gateway/app.py": "the Starlette application: builds the schema, routes /graphql, /webhooks, health",
    "gateway/endpoint.py": "the GraphQL endpoint: authenticates, builds each request's GatewayContext",
    "gateway/sse.py": "GraphQL over Server-Sent Events, a transport of the endpoint",
    "gateway/cli.py": "`lotgraph` commands: `schema`, `supergraph`, `run`, `demo`",
    "gateway/demo.py": "`lotgraph demo`: the application beside the simulators",
    "gateway/servers.py": "the uvicorn servers the demo, tests and benchmarks run the application in",
    "gateway/graphiql/": "the GraphiQL page the application serves",
    "gateway/federation/supergraph.py": "the executable schema extended with remote subgraphs' fields, wired to "
    "resolvers/remote.py: schema-side work, done once at start-up by the application",
}
UPPER = {"schema", "resolvers"}


def _shell(relative: str) -> bool:
    return any(relative == path or (path.endswith("/") and relative.startswith(path)) for path in WEB_SHELL)


def _modules(package: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py"))


def _imports(relative: str) -> set[str]:
    """Every module `relative` imports, as dotted names (relative imports resolved)."""
    tree = ast.parse((ROOT / relative).read_text(), relative)
    package = relative.removesuffix(".py").replace("/", ".").rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _dotted(path: str) -> str:
    return path.removesuffix("/").removesuffix(".py").replace("/", ".")


def _reaches(imported: str, module: str) -> bool:
    return imported == module or imported.startswith(f"{module}.")


def test_every_web_shell_module_named_exists() -> None:
    assert [path for path in WEB_SHELL if not (ROOT / path).exists()] == []


@pytest.mark.parametrize("relative", [m for m in _modules("gateway") + _modules("policies") if not _shell(m)])
def test_the_domain_and_policies_import_no_layer_above(relative: str) -> None:
    upward = {
        name
        for name in _imports(relative)
        if any(_reaches(name, top) for top in UPPER) or any(_reaches(name, _dotted(shell)) for shell in WEB_SHELL)
    }
    assert upward == set(), f"{relative} imports {sorted(upward)}"


@pytest.mark.parametrize("relative", _modules("resolvers"))
def test_resolvers_import_neither_schema_nor_the_web_shell(relative: str) -> None:
    upward = {
        name
        for name in _imports(relative)
        if _reaches(name, "schema") or any(_reaches(name, _dotted(shell)) for shell in WEB_SHELL)
    }
    assert upward == set(), f"{relative} imports {sorted(upward)}"


def test_the_check_sees_an_upward_import() -> None:
    """The parser finds imports inside functions and `from . import` forms, or the tests above prove nothing."""
    assert "schema.published" in _imports("gateway/cli.py")  # imported inside a function
    assert "resolvers.remote" in _imports("gateway/federation/supergraph.py")
