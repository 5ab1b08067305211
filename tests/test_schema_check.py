"""`lotgraph schema check`: the live schema against older SDL, from files and git refs, through the real
command (edge cases of the comparison on small SDLs); and the CI gate that runs it against the latest release
tag."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from graphql import DocumentNode, NamedTypeNode, NameNode, ObjectTypeDefinitionNode, parse, print_ast
from graphql.language import EnumTypeDefinitionNode, TypeNode, Visitor, visit

from schema.compatibility import compare
from schema.published import live_sdl

LOTGRAPH = Path(sys.executable).with_name("lotgraph")
CI_GATE = Path(__file__).resolve().parents[1] / ".ci" / "schema-check"
FEDERATION_LINK = (
    'extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", '
    'import: ["@key", "@authenticated", "@requiresScopes"])\n'
)


@pytest.fixture(scope="module")
def live() -> str:
    return live_sdl()


def check(against: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOTGRAPH, "--log-level", "warning", "schema", "check", "--against", str(against)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def verdicts(output: str, verdict: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{verdict} ")]


def sdl_file(tmp_path: Path, sdl: str, name: str = "old.graphql") -> Path:
    path = tmp_path / name
    path.write_text(sdl, encoding="utf-8")
    return path


def with_query_fields(sdl: str, *fields: str) -> str:
    """`sdl` whose Query has `fields` besides its own: the older schema of a live one that dropped them."""
    header = re.compile(r"^(type Query\b[^\n]*\{)$", re.MULTILINE)
    assert header.search(sdl), "no `type Query {` line in the SDL"
    return header.sub(lambda match: "\n".join((match[1], *(f"  {field}" for field in fields))), sdl, count=1)


def query_of(document: DocumentNode) -> ObjectTypeDefinitionNode:
    return next(
        node
        for node in document.definitions
        if isinstance(node, ObjectTypeDefinitionNode) and node.name.value == "Query"
    )


def named(type_node: TypeNode) -> str:
    while not isinstance(type_node, NamedTypeNode):
        type_node = type_node.type  # type: ignore[attr-defined]
    return type_node.name.value


def with_query_replaced(document: DocumentNode, query: ObjectTypeDefinitionNode) -> DocumentNode:
    return replace(
        document, definitions=tuple(query if node is query_of(document) else node for node in document.definitions)
    )


def test_a_removed_field_is_breaking(tmp_path: Path, live: str) -> None:
    done = check(sdl_file(tmp_path, with_query_fields(live, "retiredLookup(id: ID!): String")))

    assert done.returncode == 1, done.stdout + done.stderr
    assert verdicts(done.stdout, "BREAKING") == ["BREAKING FIELD_REMOVED: Field Query.retiredLookup was removed."]
    assert "1 breaking" in done.stdout.splitlines()[-1]


def test_a_changed_field_type_is_breaking(tmp_path: Path, live: str) -> None:
    document = parse(live)
    query = query_of(document)
    field = next(f for f in query.fields if not f.name.value.startswith("_") and named(f.type) != "Boolean")
    retyped = replace(field, type=NamedTypeNode(name=NameNode(value="Boolean")))
    old = with_query_replaced(
        document, replace(query, fields=tuple(retyped if f is field else f for f in query.fields))
    )

    done = check(sdl_file(tmp_path, print_ast(old)))

    assert done.returncode == 1, done.stdout + done.stderr
    [line] = verdicts(done.stdout, "BREAKING")
    assert line.startswith(f"BREAKING FIELD_CHANGED_KIND: Field Query.{field.name.value} changed type from Boolean")


class _References(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def enter_named_type(self, node: NamedTypeNode, *_: object) -> None:
        self.counts[node.name.value] = self.counts.get(node.name.value, 0) + 1


def test_a_new_field_and_type_pass(tmp_path: Path, live: str) -> None:
    # The older schema lacks a Query field and the object type only that field returns.
    document = parse(live)
    references = _References()
    visit(document, references)
    query = query_of(document)
    defined = {node.name.value: node for node in document.definitions if isinstance(node, ObjectTypeDefinitionNode)}
    field = next(
        f
        for f in query.fields
        if not f.name.value.startswith("_") and named(f.type) in defined and references.counts[named(f.type)] == 1
    )
    new_type = named(field.type)
    old = with_query_replaced(document, replace(query, fields=tuple(f for f in query.fields if f is not field)))
    old = replace(old, definitions=tuple(node for node in old.definitions if node is not defined[new_type]))

    done = check(sdl_file(tmp_path, print_ast(old)))

    assert done.returncode == 0, done.stdout + done.stderr
    assert verdicts(done.stdout, "BREAKING") == []
    assert done.stdout.splitlines()[-1].endswith(
        ": 0 breaking, 0 dangerous, 0 planned removal(s) of deprecated elements"
    )


def test_removing_what_was_deprecated_is_a_planned_removal(tmp_path: Path, live: str) -> None:
    # The older schema had, deprecated: two Query fields, an argument of a field and a value of an enum.
    document = parse(live)
    query = query_of(document)
    field = next(f for f in query.fields if f.arguments and not f.name.value.startswith("_"))
    extra = query_of(parse('type Query { f(asOf: String @deprecated(reason: "now")): Int }'))
    with_argument = replace(field, arguments=(*field.arguments, *extra.fields[0].arguments))
    document = with_query_replaced(
        document, replace(query, fields=tuple(with_argument if f is field else f for f in query.fields))
    )
    enum = next(node for node in document.definitions if isinstance(node, EnumTypeDefinitionNode))
    waived = next(n for n in parse('enum E { WAIVED @deprecated(reason: "not a decision") }').definitions)
    document = replace(
        document,
        definitions=tuple(
            replace(node, values=(*node.values, *waived.values)) if node is enum else node
            for node in document.definitions
        ),
    )

    old = with_query_fields(
        print_ast(document),
        'legacyBatch(id: ID!): String @deprecated(reason: "use lot")',
        "legacyPlant: String @deprecated",
    )

    done = check(sdl_file(tmp_path, old))

    assert done.returncode == 0, done.stdout + done.stderr
    assert verdicts(done.stdout, "BREAKING") == []
    assert sorted(verdicts(done.stdout, "PLANNED_REMOVAL")) == [
        f"PLANNED_REMOVAL ARG_REMOVED: Argument Query.{field.name.value}(asOf:) was removed (deprecated: now).",
        "PLANNED_REMOVAL FIELD_REMOVED: Field Query.legacyBatch was removed (deprecated: use lot).",
        "PLANNED_REMOVAL FIELD_REMOVED: Field Query.legacyPlant was removed (deprecated: No longer supported).",
        f"PLANNED_REMOVAL VALUE_REMOVED_FROM_ENUM: Enum value {enum.name.value}.WAIVED was removed"
        " (deprecated: not a decision).",
    ]
    assert ": 0 breaking, 0 dangerous, 4 planned removal(s)" in done.stdout.splitlines()[-1]


def test_only_what_was_deprecated_may_go(tmp_path: Path, live: str) -> None:
    old = with_query_fields(live, 'legacyBatch(id: ID!): String @deprecated(reason: "use lot")', "keptUntilNow: Int")

    done = check(sdl_file(tmp_path, old))

    assert done.returncode == 1
    assert verdicts(done.stdout, "BREAKING") == ["BREAKING FIELD_REMOVED: Field Query.keptUntilNow was removed."]
    assert verdicts(done.stdout, "PLANNED_REMOVAL") == [
        "PLANNED_REMOVAL FIELD_REMOVED: Field Query.legacyBatch was removed (deprecated: use lot)."
    ]


def test_a_deprecated_field_whose_type_changed_still_breaks() -> None:
    old = 'type Query { lot: String @deprecated(reason: "use lots") }'
    new = 'type Query { lot: Int @deprecated(reason: "use lots") }'

    report = compare(old, new)

    assert [change.kind for change in report.breaking] == ["FIELD_CHANGED_KIND"]
    assert report.planned == ()


def test_old_sdl_with_federation_directives_is_compared(tmp_path: Path, live: str) -> None:
    old = FEDERATION_LINK + with_query_fields(
        live,
        "retiredLookup: String @authenticated",
        'auditTrail: String @requiresScopes(scopes: [["auditor"]]) @deprecated(reason: "use auditLog")',
    )
    old += "\ndirective @composed(fields: _FieldSet!, import: [link__Import]) repeatable on OBJECT | INTERFACE\n"
    old += 'type Warehouse @key(fields: "id") @composed(fields: "id") {\n  id: ID! @authenticated\n}\n'

    done = check(sdl_file(tmp_path, old))

    assert done.returncode == 1, done.stdout + done.stderr
    # Exactly what the old SDL has and the live one lacks; the federation directives and the types only
    # their definitions reference (_FieldSet, link__Import) are no change.
    assert sorted(verdicts(done.stdout, "BREAKING")) == [
        "BREAKING DIRECTIVE_REMOVED: Directive @composed was removed.",
        "BREAKING FIELD_REMOVED: Field Query.retiredLookup was removed.",
        "BREAKING TYPE_REMOVED: Warehouse was removed.",
    ]
    assert verdicts(done.stdout, "PLANNED_REMOVAL") == [
        "PLANNED_REMOVAL FIELD_REMOVED: Field Query.auditTrail was removed (deprecated: use auditLog)."
    ]


def test_federation_1_extensions_of_undefined_types_build() -> None:
    old = 'extend type Lot @key(fields: "id") {\n  id: ID! @external\n  name: String\n}\ntype Query { lot: Lot }'
    new = 'extend type Lot @key(fields: "id") {\n  id: ID! @external\n}\ntype Query { lot: Lot }'

    assert [change.line() for change in compare(old, new).breaking] == [
        "BREAKING FIELD_REMOVED: Field Lot.name was removed."
    ]


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com",
         "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
        check=True,
        capture_output=True,
    )  # fmt: skip


def commit_schema(repo: Path, sdl: str, message: str) -> None:
    (repo / "schema").mkdir(exist_ok=True)
    (repo / "schema" / "schema.graphql").write_text(sdl, encoding="utf-8")
    git(repo, "add", "schema/schema.graphql")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    return repo


def test_against_a_git_ref_reads_the_published_file_there(repo: Path, live: str) -> None:
    commit_schema(repo, with_query_fields(live, "retiredLookup: String"), "v1")
    git(repo, "tag", "v1.0.0")
    commit_schema(repo, live, "field dropped")

    done = check("v1.0.0", cwd=repo)

    assert done.returncode == 1, done.stdout + done.stderr
    assert verdicts(done.stdout, "BREAKING") == ["BREAKING FIELD_REMOVED: Field Query.retiredLookup was removed."]
    assert done.stdout.splitlines()[-1].startswith("schema check against v1.0.0:schema/schema.graphql: 1 breaking")

    done = check("HEAD", cwd=repo)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 breaking" in done.stdout


def test_a_bad_against_is_a_clear_error(tmp_path: Path, repo: Path) -> None:
    done = check("v9.9.9", cwd=repo)
    assert done.returncode == 2
    assert "'v9.9.9' is neither an SDL file nor a git ref" in done.stderr

    (repo / "README").write_text("no schema here\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "no schema yet")
    done = check("HEAD", cwd=repo)
    assert done.returncode == 2
    assert "git ref 'HEAD' has no schema/schema.graphql" in done.stderr

    done = check(sdl_file(tmp_path, "type Query {"))
    assert done.returncode == 2
    assert "not valid SDL" in done.stderr


def test_ci_gate_passes_without_a_release_tag_and_fails_on_a_breaking_one(repo: Path, live: str) -> None:
    commit_schema(repo, live, "first")

    done = subprocess.run([CI_GATE, LOTGRAPH], cwd=repo, capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "schema check: no release tag (v*) yet, nothing to compare against\n"

    commit_schema(repo, with_query_fields(live, "retiredLookup: String"), "release")
    git(repo, "tag", "v1.0.0")

    done = subprocess.run([CI_GATE, LOTGRAPH], cwd=repo, capture_output=True, text=True, check=False)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "BREAKING FIELD_REMOVED: Field Query.retiredLookup was removed." in done.stdout
