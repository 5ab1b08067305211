"""What a router in front of lotgraph may enforce before a request arrives: Federation's `@authenticated` and
`@requiresScopes`, the latter derived from the Cedar policies (`policies/scopes.py`) so both draw one boundary."""

from __future__ import annotations

from strawberry.federation.schema_directives import Authenticated, RequiresScopes

from policies.scopes import required_scopes

AUTHENTICATED: tuple[object, ...] = (Authenticated(),)


def guarded_by(action: str) -> tuple[object, ...]:
    """Directives for a type or field that Cedar guards with `action`: any role the policies may permit."""
    return (RequiresScopes(scopes=required_scopes(action)),)
