"""`lotgraph ops`: an operator's view of what is stuck or diverged, and the actions that fix it, without GraphiQL.

Every command is a GraphQL request to a running gateway, made with the operator's own token (`--token` or
`LOTGRAPH_TOKEN`; `--url` or `LOTGRAPH_URL`), so it is decided by Cedar and audited exactly as the same query or
mutation from any client: the CLI adds no power. Results print as a table, or as JSON with `--json` (for scripts
and runbooks). A refused token, an unreachable gateway or a GraphQL error is one line on stderr naming its code.

Ids say what they are: an exception entry's id is a number, an operation's a UUID; `retry` and `discard` act on
either (`retryException`/`discardException`, or `retryOperation`/`abandonOperation`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx2
from rich.console import Console
from rich.table import Table
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:8000"
OPERATION = "id kind state actor createdAt error lotIds"
ENTRY = "id kind state reasonCode reason subject lotId plants attempts createdAt"
PENDING = f"{{ pendingOperations {{ {OPERATION} }} }}"
EXCEPTIONS = f"""query($filter: ExceptionFilter, $first: Int!) {{ exceptions(filter: $filter, first: $first) {{
  totalCount edges {{ node {{ {ENTRY} }} }} }} }}"""
DIVERGENT_LOT = "lotId plant kinds qualityStatus disagreements firstSeen divergentSeconds"
DIVERGENT = f"""query($filter: DivergentLotFilter, $first: Int!) {{ divergentLots(filter: $filter, first: $first) {{
  totalCount edges {{ node {{ {DIVERGENT_LOT} }} }} }} }}"""
REPAIR = f"""mutation($lot: ID!, $why: String!, $key: String!) {{
  repairLot(input: {{lotId: $lot, reason: $why, idempotencyKey: $key}}) {{ {OPERATION} }} }}"""
RETRY_EXCEPTION = f"mutation($id: ID!) {{ retryException(id: $id) {{ {ENTRY} }} }}"
DISCARD_EXCEPTION = f"mutation($id: ID!, $why: String!) {{ discardException(id: $id, reason: $why) {{ {ENTRY} }} }}"
RETRY_OPERATION = f"mutation($id: ID!) {{ retryOperation(id: $id) {{ {OPERATION} }} }}"
ABANDON_OPERATION = f"mutation($id: ID!, $why: String!) {{ abandonOperation(id: $id, reason: $why) {{ {OPERATION} }} }}"


Command = Callable[["Client", argparse.Namespace], list[dict[str, Any]]]


class Refused(Exception):
    """The gateway (or the way to it) said no: printed as one line, exit status 1."""


class Client:
    def __init__(self, url: str, token: str | None) -> None:
        if not token:
            raise Refused("no token: pass --token or set LOTGRAPH_TOKEN (`lotgraph token` mints one in development)")
        self.url = url.rstrip("/") + "/graphql"
        self.headers = {"Authorization": f"Bearer {token}"}

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = httpx2.post(self.url, json={"query": query, "variables": variables or {}},
                                  headers=self.headers, timeout=60)  # fmt: skip
        except httpx2.HTTPError as exc:
            raise Refused(f"cannot reach the gateway at {self.url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            raise Refused(f"{self.url} answered HTTP {response.status_code}, not GraphQL") from None
        if errors := body.get("errors"):
            first = errors[0]
            code = (first.get("extensions") or {}).get("code", f"HTTP {response.status_code}")
            raise Refused(f"{code}: {first.get('message')}")
        return body["data"]


def _operations(*states: str) -> Command:
    """The operations needing attention that are in one of these states."""

    def listed(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
        return [op for op in client.data(PENDING)["pendingOperations"] if op["state"] in states]

    return listed


def _exceptions(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    filter_ = {key: value for key, value in (("kind", args.kind), ("state", args.state), ("plant", args.plant),
                                             ("lotId", args.lot)) if value}  # fmt: skip
    page = client.data(EXCEPTIONS, {"filter": filter_, "first": args.first})["exceptions"]
    return [edge["node"] for edge in page["edges"]]


def _divergent(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    filter_ = {key: value for key, value in (("plant", args.plant), ("kind", args.kind),
                                             ("olderThan", args.older_than)) if value}  # fmt: skip
    page = client.data(DIVERGENT, {"filter": filter_, "first": args.first})["divergentLots"]
    return [edge["node"] for edge in page["edges"]]


def _repair(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    key = args.key or f"ops-repair-{args.lot}-{uuid.uuid4().hex[:12]}"
    return [client.data(REPAIR, {"lot": args.lot, "why": args.reason, "key": key})["repairLot"]]


def _is_entry(id_: str) -> bool:
    return id_.isascii() and id_.isdigit()


def _retry(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    if _is_entry(args.id):
        return [client.data(RETRY_EXCEPTION, {"id": args.id})["retryException"]]
    return [client.data(RETRY_OPERATION, {"id": args.id})["retryOperation"]]


def _discard(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    if _is_entry(args.id):
        return [client.data(DISCARD_EXCEPTION, {"id": args.id, "why": args.reason})["discardException"]]
    return [client.data(ABANDON_OPERATION, {"id": args.id, "why": args.reason})["abandonOperation"]]


COLUMNS = {  # what a table shows of each kind of row; --json shows everything
    "divergent": ("lotId", "plant", "kinds", "qualityStatus", "firstSeen", "disagreements"),
    "operation": ("id", "kind", "state", "createdAt", "lotIds", "error"),
    "entry": ("id", "kind", "state", "reasonCode", "subject", "lotId", "plants", "attempts", "reason"),
}


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`lotgraph ops ...` on the root parser's subcommands."""
    about = "operate a running gateway over its GraphQL API, with your token (see docs/runbooks.md)"
    ops = commands.add_parser("ops", help=about, description=about).add_subparsers(dest="ops_command", required=True)

    def command(name: str, summary: str, run: Command, rows: str) -> argparse.ArgumentParser:
        sub = ops.add_parser(name, help=summary, description=summary)
        sub.add_argument("--url", default=os.environ.get("LOTGRAPH_URL", DEFAULT_URL),
                         help=f"the gateway (default: LOTGRAPH_URL or {DEFAULT_URL})")  # fmt: skip
        sub.add_argument("--token", default=os.environ.get("LOTGRAPH_TOKEN"), help="bearer token (LOTGRAPH_TOKEN)")
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        sub.set_defaults(handler=lambda args: _main(run, rows, args))
        return sub

    command("pending", "operations still being retried (PENDING) or waiting for a person (BLOCKED)",
            _operations("PENDING", "BLOCKED"), "operation")  # fmt: skip
    command("failed", "operations a system refused for good (FAILED): retry once fixed, or discard",
            _operations("FAILED"), "operation")  # fmt: skip
    listed = command("exceptions", "the exception queue: parked events, failed steps, notifications", _exceptions,
                     "entry")  # fmt: skip
    listed.add_argument("--kind", choices=("EVENT", "STEP", "NOTIFICATION"))
    listed.add_argument("--state", choices=("OPEN", "RETRIED", "DISCARDED", "RESOLVED"), default="OPEN")
    listed.add_argument("--plant")
    listed.add_argument("--lot")
    listed.add_argument("--first", type=int, default=50)
    divergent = command("divergent", "lots whose QMS, WMS and ERP disagree, as reconciliation found them",
                        _divergent, "divergent")  # fmt: skip
    divergent.add_argument("--plant")
    divergent.add_argument("--kind", help="e.g. AVAILABLE_WHILE_BLOCKED")
    divergent.add_argument("--older-than", type=int, metavar="SECONDS", help="divergent at least this long")
    divergent.add_argument("--first", type=int, default=50)
    repair = command("repair", "bring WMS and ERP in line with what QMS says about a lot (repairLot)", _repair,
                     "operation")  # fmt: skip
    repair.add_argument("lot")
    repair.add_argument("--reason", required=True)
    repair.add_argument("--key", help="idempotency key (default: a new one): the same key repeats nothing")
    retry = command("retry", "retry an exception entry (a number) or an operation (a UUID)", _retry, "auto")
    retry.add_argument("id")
    discard = command("discard", "discard an exception entry, or abandon an operation, saying why", _discard, "auto")
    discard.add_argument("id")
    discard.add_argument("--reason", required=True)


def _main(run: Command, rows: str, args: argparse.Namespace) -> None:
    try:
        result = run(Client(args.url, args.token), args)
    except Refused as exc:
        print(f"lotgraph ops {args.ops_command}: {exc}", file=sys.stderr)
        sys.exit(1)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if rows == "auto":
        rows = "entry" if _is_entry(getattr(args, "id", "")) else "operation"
    _table(result, COLUMNS[rows])


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    table = Table(*columns, show_lines=False)
    for row in rows:
        table.add_row(*(Text(_cell(row.get(column))) for column in columns))  # Text: no markup in the data
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    console.print(f"{len(rows)} shown")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
