"""The published SDL, `schema/schema.graphql`: checked in, so that a change to the API shows in review and
later versions have a baseline to be checked against (`lotgraph schema check`). It is printed by strawberry
from the live schema, so whatever directives the schema carries (federation's included) are in it."""

from __future__ import annotations

from pathlib import Path

from strawberry.printer import print_schema

from schema import build_schema

PUBLISHED = Path(__file__).with_name("schema.graphql")


def live_sdl() -> str:
    """The SDL of the schema this code serves (introspection on: it is not part of the SDL anyway)."""
    return print_schema(build_schema(introspection=True)) + "\n"


def write(path: Path = PUBLISHED) -> Path:
    """Write the live SDL to `path` (the published file unless told otherwise); what `make schema` runs."""
    path.write_text(live_sdl(), encoding="utf-8")
    return path
