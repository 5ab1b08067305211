"""GraphiQL served by the gateway itself: the page and its assets, with no URL outside the gateway.

Plant networks are often air-gapped, so the browser assets are vendored (`vendor.py`, `assets/`) and served
under `/graphql/assets/`; the page names them relative to itself, with their checksums as `integrity`, and a
Content-Security-Policy keeps the browser from loading anything from elsewhere. A note on the page says how to
authenticate (the Headers tab); where a development persona is configured (`graphiql_persona`, the demo), that
tab is pre-filled with a fresh token of that persona. Never in production: the settings refuse it there.
"""

from __future__ import annotations

import html
import json
import secrets
from pathlib import Path
from typing import Any

from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from gateway.auth import DEV_PERSONAS, DevSigner, mint_persona
from gateway.settings import Mode, Settings

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
ASSETS_PATH = "/graphql/assets"
MANIFEST: dict[str, str] = json.loads((HERE / "assets.json").read_text())
STYLES = ("graphiql@3.8.3/graphiql.min.css", "@graphiql/plugin-explorer@1.0.2/style.css")
SCRIPTS = (
    "react@18.2.0/react.production.min.js",
    "react-dom@18.2.0/react-dom.production.min.js",
    "graphiql@3.8.3/graphiql.min.js",
    "@graphiql/plugin-explorer@1.0.2/index.umd.js",
)
TEMPLATE = (HERE / "page.html").read_text()
AUTH_HEADER = '{"Authorization": "Bearer <token>"}'
DEFAULT_QUERY = """# lotgraph: one graph over the plant's ERP, QMS, WMS and MES.
#
# Send your token in the Headers tab below as {"Authorization": "Bearer <token>"}.
# Run a query with Ctrl-Enter or the play button; Ctrl-Space completes.

{
  lots(first: 5) {
    totalCount
    edges { node { id qualityStatus material { description } } }
  }
}
"""
# Inline styles stay allowed: GraphiQL's editors set style attributes. Everything else comes from the gateway.
CSP = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class Assets(StaticFiles):
    """The vendored files; their paths carry the package version, so browsers may keep them for a year."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def assets_app() -> Assets:
    return Assets(directory=ASSETS)


def _asset_url(name: str) -> str:
    """Relative to the page at `/graphql`, so a proxy that serves the gateway under a prefix keeps working."""
    return f"{ASSETS_PATH.lstrip('/')}/{name}"


def _json_for_script(value: object) -> str:
    """JSON that cannot end the <script> element it sits in."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def prefilled_headers(settings: Settings) -> tuple[str, str] | None:
    """(persona's name, Headers tab JSON) with a fresh development token, when the settings ask for one."""
    key = settings.graphiql_persona
    if key is None or settings.mode is not Mode.DEVELOPMENT:
        return None
    signer = DevSigner.load_or_create(settings.auth.dev_key_path(settings.data_dir))
    token = mint_persona(signer, settings.auth, key)
    return DEV_PERSONAS[key].name, json.dumps({"Authorization": f"Bearer {token}"}, indent=2)


def render_page(settings: Settings) -> HTMLResponse:
    """The GraphiQL page; never cached, since it may carry a token."""
    nonce = secrets.token_urlsafe(16)
    styles = [f'    <link rel="stylesheet" href="{_asset_url(n)}" integrity="{MANIFEST[n]}" />' for n in STYLES]
    scripts = [f'    <script src="{_asset_url(n)}" integrity="{MANIFEST[n]}"></script>' for n in SCRIPTS]
    note = (
        "Authentication: put your bearer token in the <b>Headers</b> tab below the query editor as "
        f"<code>{html.escape(AUTH_HEADER, quote=False)}</code>. Headers are not saved in this browser."
    )
    prefilled = prefilled_headers(settings)
    if prefilled is not None:
        persona, _ = prefilled
        note += (
            f" Development: pre-filled with a token of <b>{html.escape(persona)}</b>, fresh on every load; "
            "<code>lotgraph token</code> mints others, and <code>lotgraph demo</code> prints one per persona."
        )
    config = {"defaultQuery": DEFAULT_QUERY, "defaultHeaders": prefilled[1] if prefilled else None}
    page = TEMPLATE
    for slot, value in {
        "styles": "\n".join(styles),
        "scripts": "\n".join(scripts),
        "note": note,
        "config": _json_for_script(config),
        "nonce": nonce,
    }.items():
        page = page.replace("{{" + slot + "}}", value)
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": CSP.format(nonce=nonce)}
    return HTMLResponse(page, headers=headers)
