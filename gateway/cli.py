"""The `lotgraph` command: run the gateway, the demo plant, or only the simulators; sweep plants for divergent lots;
mint development tokens."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys

import uvicorn

from gateway import __version__, logs, operator
from gateway.auth import DEV_PERSONAS
from gateway.errors import ConfigurationError

# The people's roles the policies know, as the demo's personas hold them: what `lotgraph token --role` offers.
MIN_LOTS = 1_000  # a plant whose every tier has lots, whatever the seed (a few hundred can fall short)
ROLES = tuple(dict.fromkeys(role for persona in DEV_PERSONAS.values() for role in persona.roles))


def _run(args: argparse.Namespace) -> None:
    from gateway.app import create_app
    from gateway.federation.client import FederationError
    from gateway.servers import WEBSOCKETS
    from gateway.settings import load_settings, warn_about_unknown_variables
    from gateway.store import Store

    warn_about_unknown_variables()
    settings = load_settings(**{key: value for key, value in (("host", args.host), ("port", args.port)) if value})

    async def check_store() -> None:  # a store that cannot be opened is one line here, not a failed lifespan
        await (await Store.open(settings.resolved_store_url)).aclose()

    try:
        app = create_app(settings)
    except FederationError as exc:  # the operator's mistake or a peer's outage: one line, not a traceback
        print(f"lotgraph: cannot start: {exc}", file=sys.stderr)
        sys.exit(2)
    asyncio.run(check_store())
    gc.freeze()  # modules and schema live as long as the process: keep full collections short
    # A genealogy's answer is some 200,000 objects that die with the request: collected every 700 allocations
    # (the default), they outlive two young collections, reach the old generation and trigger about one full
    # collection per request (40-70 ms). Every 50,000 allocations they are mostly freed by refcount first.
    gc.set_threshold(50_000, 20, 20)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, log_config=None, **WEBSOCKETS)


def _demo(args: argparse.Namespace) -> None:
    from gateway.demo import run_demo

    asyncio.run(
        run_demo(args.host, args.port, args.seed, args.lots, args.shift_seconds, args.mqtt_url, args.shift_duration)
    )


def _plant_size(text: str) -> int:
    """`--lots`: enough for every tier of the bill of materials to have lots to consume."""
    lots = int(text)
    if lots < MIN_LOTS:
        raise argparse.ArgumentTypeError(f"a plant needs at least {MIN_LOTS} lots (got {lots})")
    return lots


def _sim(args: argparse.Namespace) -> None:
    from gateway.demo import plant_group
    from simulators import create_apps, generate

    async def main() -> None:
        dataset = generate(seed=args.seed, lots=args.lots)
        group = plant_group(dataset, args.host, args.port + 1, apps=create_apps(dataset, with_lims=True))

        async def announce() -> None:
            for listener in group.listeners:
                print(f"  {listener.name:4} {listener.url}", flush=True)

        await group.serve_until_signal(on_started=announce)

    asyncio.run(main())


def _audit_verify(args: argparse.Namespace) -> None:
    from gateway.settings import load_settings
    from gateway.store import Store, describe

    async def verify() -> int:
        url = load_settings().resolved_store_url
        store = await Store.open_existing(url)
        try:
            result = await store.audit.verify()
        finally:
            await store.aclose()
        if result.ok:
            print(f"audit log intact: {result.entries} entries, hash chain verified (store {describe(url)})")
            return 0
        print(f"audit log TAMPERED in {describe(url)}: first bad entry is #{result.first_bad}: {result.problem}")
        return 1

    sys.exit(asyncio.run(verify()))


def _reconcile(args: argparse.Namespace) -> None:
    from gateway.errors import GatewayError
    from gateway.reconcile.service import Reconciliation
    from gateway.reconcile.sweep import Progress
    from gateway.settings import load_settings, warn_about_unknown_variables
    from gateway.store import Store, describe
    from gateway.store.divergence import DivergenceFilter
    from gateway.telemetry import Metrics
    from gateway.upstream import Upstream

    warn_about_unknown_variables()
    settings = load_settings()

    def progress(done: Progress) -> None:
        share = f" of {done.total} ({done.checked / done.total:.0%})" if done.total else ""
        print(f"{done.plant}: {done.checked}{share} lots checked, {done.divergent_found} newly divergent, "
              f"{done.resolved} resolved", file=sys.stderr, flush=True)  # fmt: skip

    async def sweep() -> int:
        store = await Store.open(settings.resolved_store_url)
        metrics = Metrics()
        upstream = Upstream.open(settings.sources, metrics)
        reconciliation = Reconciliation.open(settings, store, upstream, metrics)
        try:
            plants = args.plants or await reconciliation.sweep.plants()
            for plant in plants:
                done = await reconciliation.run_once(plant, on_page=progress)
                requests = ", ".join(f"{source.upper()} {n}" for source, n in done.requests.items())
                rows, total = await store.divergent.page(DivergenceFilter(plants=frozenset([plant])), limit=args.show)
                forgotten = f", {done.forgotten} resolved past retention deleted" if done.forgotten else ""
                print(f"{plant}: swept {done.checked} lots in {done.seconds:.2f} s ({requests} requests); {total} "
                      f"divergent ({done.divergent_found} new, {done.resolved} resolved{forgotten})")  # fmt: skip
                for row in rows:
                    print(f"  {row.lot_id}  {','.join(row.kinds)}  {'; '.join(row.statements['disagreements'])}")
                if total > len(rows):
                    print(f"  ... and {total - len(rows)} more (divergentLots in the graph, or --show)")
            print(f"store {describe(settings.resolved_store_url)}")
            return 0
        except GatewayError as exc:
            print(f"lotgraph reconcile: stopped: {exc.code}: {exc} (the next sweep carries on from there)",
                  file=sys.stderr)  # fmt: skip
            return 1
        finally:
            await reconciliation.aclose()
            await upstream.aclose()
            await store.aclose()

    sys.exit(asyncio.run(sweep()))


def _policy_test(args: argparse.Namespace) -> None:
    from policies.engine import PolicyEngine
    from policies.testing import load_cases, run

    engine = PolicyEngine()
    outcomes = run(engine, load_cases())
    failed = [outcome for outcome in outcomes if not outcome.passed]
    for outcome in failed:
        print(f"FAIL {outcome.describe()}")
    print(f"policy set {engine.content_hash[:16]}: {len(engine.policies)} policies")
    print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


def _schema_write(args: argparse.Namespace) -> None:
    from pathlib import Path

    from schema.published import PUBLISHED, write

    print(f"wrote {write(Path(args.output) if args.output else PUBLISHED)}")


def _schema_check(args: argparse.Namespace) -> None:
    from schema.compatibility import SchemaSourceError, compare, read_against
    from schema.published import live_sdl

    try:
        old_sdl, label = read_against(args.against)
        report = compare(old_sdl, live_sdl())
    except SchemaSourceError as error:
        print(f"lotgraph schema check: {error}", file=sys.stderr)
        sys.exit(2)  # could not check: not the same as a breaking change
    for line in report.lines():
        print(line)
    print(f"schema check against {label}: {report.summary()}")
    sys.exit(0 if report.ok else 1)


def _supergraph(args: argparse.Namespace) -> None:
    from gateway.federation.client import FederationError
    from gateway.federation.composition import supergraph_sdl
    from gateway.federation.supergraph import federate
    from gateway.settings import load_settings
    from schema import build_schema

    schema = build_schema(introspection=True)
    try:
        federate(schema, load_settings().subgraphs)
    except FederationError as exc:
        print(f"lotgraph supergraph: {exc}", file=sys.stderr)
        sys.exit(2)
    print(supergraph_sdl(schema._schema))


def _token(args: argparse.Namespace) -> None:
    from datetime import timedelta

    from gateway.auth import DevSigner
    from gateway.settings import Mode, load_settings

    settings = load_settings()
    if settings.mode is Mode.PRODUCTION:
        sys.exit("lotgraph token: refused in production mode; dev tokens exist for development (LOTGRAPH_MODE)")
    auth = settings.auth
    signer = DevSigner.load_or_create(auth.dev_key_path(settings.data_dir))
    token = signer.mint(
        args.sub or f"dev-{args.roles[0]}",
        roles=args.roles,
        plants=args.plants,
        supplier_id=args.supplier,
        amr=("pwd", "mfa") if args.mfa else ("pwd",),
        ttl=timedelta(minutes=args.ttl_minutes),
        issuer=auth.issuer,
        audience=auth.audience,
    )
    print(token)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="lotgraph", description=__doc__)
    root.add_argument("--version", action="version", version=f"lotgraph {__version__}")
    root.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    root.add_argument(
        "--log-format",
        default=os.environ.get("LOTGRAPH_LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="json: one object per line with correlation and trace ids (LOTGRAPH_LOG_FORMAT)",
    )
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve the gateway as configured by LOTGRAPH_* settings")
    run.add_argument("--host", help="default: LOTGRAPH_HOST or 127.0.0.1")
    run.add_argument("--port", type=int, help="default: LOTGRAPH_PORT or 8000")
    run.set_defaults(handler=_run)

    audit = commands.add_parser("audit", help="the audit log").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser("verify", help="check the hash chain; name the first edited, removed or moved entry")
    verify.set_defaults(handler=_audit_verify)

    about_reconcile = (
        "sweep plants for lots whose QMS, WMS and ERP disagree, now, against the configured sources and store (as "
        "`lotgraph run` uses them, at the sweep's budget); progress on stderr, findings on stdout"
    )
    reconcile = commands.add_parser("reconcile", help=about_reconcile, description=about_reconcile)
    reconcile.add_argument("--plant", dest="plants", action="append", default=[],
                           help="repeatable; default: LOTGRAPH_RECONCILIATION__PLANTS (* = every plant)")  # fmt: skip
    reconcile.add_argument("--show", type=int, default=20, help="divergent lots listed per plant")
    reconcile.set_defaults(handler=_reconcile)

    policy = commands.add_parser("policy", help="the Cedar policy set").add_subparsers(
        dest="policy_command", required=True
    )
    policy.add_parser("test", help="run the allow/deny cases in policies/tests/*.yaml").set_defaults(
        handler=_policy_test
    )

    schema = commands.add_parser("schema", help="the published SDL, schema/schema.graphql").add_subparsers(
        dest="schema_command", required=True
    )
    write = schema.add_parser("write", help="write the live schema's SDL to schema/schema.graphql")
    write.add_argument("--output", help="write to this file instead")
    write.set_defaults(handler=_schema_write)
    check = schema.add_parser(
        "check", help="list breaking and dangerous changes since an older schema; fail on a breaking one"
    )
    check.add_argument("--against", required=True, help="an SDL file, or a git ref (its schema/schema.graphql)")
    check.set_defaults(handler=_schema_check)

    commands.add_parser(
        "supergraph", help="print the schema lotgraph serves with the configured remote subgraphs (LOTGRAPH_SUBGRAPHS)"
    ).set_defaults(handler=_supergraph)

    for name, handler, summary in (
        (
            "demo",
            _demo,
            "the gateway on PORT, the ERP, QMS, WMS, MES simulators on PORT+1..PORT+4, the LIMS on PORT+5, "
            "the supervisors' pager on PORT+6",
        ),
        ("sim", _sim, "only the simulated plant: ERP, QMS, WMS, MES on PORT+1..PORT+4, the LIMS on PORT+5"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("--host", default="127.0.0.1")
        command.add_argument("--port", type=int, default=8000)
        command.add_argument("--seed", type=int, default=42, help="the same seed always gives the same plant")
        command.add_argument("--lots", type=_plant_size, default=20_000, help="how many lots the plant has")
        command.set_defaults(handler=handler)
        if name == "demo":
            command.add_argument("--shift-seconds", type=float, default=3.0,
                                 help="one simulated production step this often; 0 = no shift")  # fmt: skip
            command.add_argument("--shift-duration", type=float, metavar="SECONDS",
                                 help="stop the shift after this long, then the plant settles")  # fmt: skip
            command.add_argument("--mqtt-url", help="MES publishes to this MQTT broker (default: webhooks)")

    about_tokens = (
        "print a development bearer token, signed with <data_dir>/dev-signing-key.pem. Development mode only "
        "(LOTGRAPH_MODE=development, as `lotgraph demo` runs): a production gateway trusts only its identity "
        "provider's keys, and this command refuses to run there."
    )
    token = commands.add_parser("token", help=about_tokens, description=about_tokens)
    token.add_argument(
        "--role",
        dest="roles",
        action="append",
        required=True,
        choices=ROLES,
        help=f"repeatable; one of: {', '.join(ROLES)}",
    )
    token.add_argument("--plant", dest="plants", action="append", default=[], help="repeatable; * for every plant")
    token.add_argument("--supplier", help="the supplier id a supplier acts for")
    token.add_argument("--sub", help="subject; default: dev-ROLE")
    token.add_argument("--mfa", action="store_true", help="as if the holder signed in with a second factor")
    token.add_argument("--ttl-minutes", type=int, default=480)
    token.set_defaults(handler=_token)
    operator.add_commands(commands)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logs.configure(args.log_level, json_lines=args.log_format == "json")
    try:
        args.handler(args)
    except ConfigurationError as exc:  # the operator's to fix: one line naming the setting, never a traceback
        print(f"lotgraph: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
