"""GraphiQL works on an air-gapped plant network: the page names nothing outside the gateway, the gateway serves
every asset itself, and a real browser (Debian's Chromium driven by Playwright, nothing reachable but loopback)
renders it and runs a query with the development token the demo pre-fills."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from playwright.sync_api import Request, Route, expect, sync_playwright
from pydantic import ValidationError

from gateway.graphiql import ASSETS, MANIFEST
from gateway.graphiql.vendor import integrity
from gateway.settings import Mode, Settings
from tests.conftest import Plant, start_gateway
from tests.services import chromium

LOOPBACK = {"127.0.0.1", "localhost"}
HTML = {"accept": "text/html"}
QUERY = "{ lots(first: 2) { totalCount } pendingOperations { id } }"
SUBSCRIPTION = "subscription { qualityEvents { cursor type lotId } }"


def _outside_urls(text: str) -> list[str]:
    return [
        url for url in re.findall(r"""(?:https?|wss?)://[^\s"'<>)]+""", text) if urlsplit(url).hostname not in LOOPBACK
    ]


def _assets(page: str) -> list[tuple[str, str]]:
    """(relative URL, integrity) of every stylesheet and script the page loads."""
    return re.findall(r'(?:src|href)="(graphql/assets/[^"]+)" integrity="([^"]+)"', page)


def test_page_names_nothing_outside_the_gateway_and_its_assets_are_served(plant: Plant) -> None:
    with start_gateway(plant) as gateway:
        page = httpx2.get(f"{gateway.url}/graphql", headers=HTML)
        served = {path: httpx2.get(f"{gateway.url}/{path}") for path, _ in _assets(page.text)}
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert _outside_urls(page.text) == [], "an air-gapped plant cannot load these"
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '{"Authorization": "Bearer &lt;token&gt;"}' in page.text, "the page says where the token goes"
    assert "Bearer ey" not in page.text, "no persona configured: nothing pre-filled"
    assert len(_assets(page.text)) == 6  # react, react-dom, graphiql js+css, explorer js+css
    for path, expected in _assets(page.text):
        response = served[path]
        assert response.status_code == 200, path
        kind = "text/css" if path.endswith(".css") else "javascript"
        assert kind in response.headers["content-type"], (path, response.headers["content-type"])
        assert "immutable" in response.headers["cache-control"]
        assert "sha384-" + base64.b64encode(hashlib.sha384(response.content).digest()).decode() == expected


def test_vendored_assets_match_their_manifest_and_carry_their_licences() -> None:
    on_disk = {str(path.relative_to(ASSETS)) for path in ASSETS.rglob("*") if path.is_file()}
    assert on_disk == set(MANIFEST), "assets.json lists exactly the vendored files (make graphiql-assets)"
    for name, expected in MANIFEST.items():
        assert integrity(ASSETS / name) == expected, name
    packages = {Path(name).parent for name in MANIFEST}
    assert all(name in MANIFEST for name in (f"{package}/LICENSE" for package in packages))


def test_production_serves_no_graphiql_unless_asked_and_never_prefills_a_token(plant: Plant) -> None:
    asset = f"graphql/assets/{next(iter(MANIFEST))}"
    with start_gateway(plant, mode=Mode.PRODUCTION) as gateway:
        assert httpx2.get(f"{gateway.url}/{asset}").status_code == 404
    with start_gateway(plant, mode=Mode.PRODUCTION, graphiql=True) as gateway:
        page = httpx2.get(f"{gateway.url}/graphql", headers=HTML)
        assert httpx2.get(f"{gateway.url}/{asset}").status_code == 200
    assert "Headers" in page.text and "Bearer ey" not in page.text
    with pytest.raises(ValidationError, match="development mode"):
        Settings(mode=Mode.PRODUCTION, graphiql=True, graphiql_persona="qa_manager")


def test_browser_renders_graphiql_offline_and_runs_a_query_with_the_prefilled_token(
    plant: Plant, tmp_path: Path
) -> None:
    executable = chromium()  # fails, never skips, when there is no browser to be had
    outside: list[str] = []
    frames: list[str | bytes] = []  # the subscription's WebSocket, both ways
    problems: list[str] = []

    def loopback_only(route: Route, request: Request) -> None:
        if urlsplit(request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    with (
        start_gateway(plant, graphiql_persona="qa_manager") as gateway,
        sync_playwright() as playwright,
    ):
        # Besides the route below, nothing but loopback even resolves: no request can leave the machine.
        resolve_loopback_only = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
        browser = playwright.chromium.launch(executable_path=executable, args=[resolve_loopback_only])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.route("**/*", loopback_only)
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.on("console", lambda message: message.type == "error" and problems.append(message.text))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{gateway.url}/graphql")
            page.wait_for_selector(".graphiql-query-editor .CodeMirror")
            assert "Loading..." not in page.inner_text("#graphiql")
            assert "Authorization" in page.inner_text("#lotgraph-auth-note")
            tools = (
                "[...document.querySelectorAll('.graphiql-editor-tool .CodeMirror')].map(e => e.CodeMirror.getValue())"
            )
            assert any('"Authorization": "Bearer ey' in text for text in page.evaluate(tools)), "the Headers tab"
            page.evaluate(
                f"document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue({QUERY!r})"
            )
            page.click(".graphiql-execute-button")
            # A selector, not wait_for_function: the page's Content-Security-Policy forbids the eval that needs.
            expect(page.locator(".graphiql-response")).to_contain_text("totalCount", timeout=20_000)
            result = page.evaluate("document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()")
            page.screenshot(path=str(tmp_path / "graphiql.png"))
            page.reload()
            page.wait_for_selector(".graphiql-query-editor .CodeMirror")
            prefilled_again = page.evaluate(tools)
            page.wait_for_timeout(1_000)  # GraphiQL saves its tabs a moment after a change
            stored = page.evaluate("JSON.stringify(window.localStorage)")
            page.on("websocket", lambda socket: socket.on("framesent", lambda frame: frames.append(frame)))
            page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(frame)))
            page.evaluate(
                f"document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue({SUBSCRIPTION!r})"
            )
            page.wait_for_timeout(300)  # GraphiQL parses the editor 100 ms after a change, then knows a subscription
            page.click(".graphiql-execute-button")
            for _ in range(100):
                if any("connection_ack" in str(frame) for frame in frames):
                    break
                page.wait_for_timeout(100)
        finally:
            browser.close()
    assert outside == [], "the page asked for something beyond loopback"
    assert problems == [], problems
    assert '"errors"' not in result, result
    assert re.search(r'"totalCount": \d+', result), result
    assert '"pendingOperations": [' in result, "only the pre-filled QA manager's token may list operations"
    assert "queries" in stored and "Bearer" not in stored, f"tokens are not kept in the browser: {stored}"
    assert any('"Authorization": "Bearer ey' in text for text in prefilled_again), "a fresh token on every load"
    init = next(json.loads(frame) for frame in frames if "connection_init" in str(frame))
    assert init["payload"]["Authorization"].startswith("Bearer ey"), "the Headers tab authenticates subscriptions"
    assert any("connection_ack" in str(frame) for frame in frames), frames
