"""What a router in front of lotgraph may enforce before a request arrives: Federation's `@authenticated` and
`@requiresScopes`, the latter derived from the Cedar policies (`policies/scopes.py`) so both draw one boundary."""

from __future__ import annotations

from graphql import REMOVE, Visitor, parse, print_ast, visit
from graphql.language import ast
from strawberry.federation.schema_directives import Authenticated, RequiresScopes

from policies.scopes import required_scopes

AUTHENTICATED: tuple[object, ...] = (Authenticated(),)


def guarded_by(action: str) -> tuple[object, ...]:
    """Directives for a type or field that Cedar guards with `action`: any role the policies may permit."""
    return (RequiresScopes(scopes=required_scopes(action)),)


ROUTER_DIRECTIVES = frozenset({"authenticated", "requiresScopes"})


class _WithoutRouterDirectives(Visitor):
    def enter_directive(self, node: ast.DirectiveNode, *_: object) -> object:
        return REMOVE if node.name.value in ROUTER_DIRECTIVES else None

    def enter_string_value(self, node: ast.StringValueNode, _key: object, _parent: object, _path: object,
                           ancestors: list[object]) -> object:  # fmt: skip
        """Their names in `@link(import: [...])`."""
        in_link = any(isinstance(a, ast.DirectiveNode) and a.name.value == "link" for a in ancestors)
        return REMOVE if in_link and node.value.removeprefix("@") in ROUTER_DIRECTIVES else None


def without_router_directives(sdl: str) -> str:
    """The subgraph SDL for a router that refuses these directives (Apollo Gateway for Node does: it cannot
    enforce them). lotgraph decides every request with Cedar either way; only the router's early check goes."""
    return print_ast(visit(parse(sdl), _WithoutRouterDirectives()))
