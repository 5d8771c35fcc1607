"""Browser-grade headers (issue 18): a strict CSP on the page (a fresh style nonce per response,
never inline script or eval), ``default-src 'none'`` on the API, nosniff and Referrer-Policy on
every answer, HSTS and a ``Secure`` cookie only over https (directly or through a trusted proxy,
the WebSocket handshake included), and ``/docs`` off by default, local when on.

Against real Hypercorn servers on loopback, serving a stand-in page (the build's placeholder in
it) so the page's tests do not depend on a built frontend.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from quart import Quart
from websockets.asyncio.client import connect
from werkzeug.datastructures import Headers

from quartapp import AIBlocks
from quartapp.app import create_app
from quartapp.headers import BUILD_NONCE_MARK, DOCS_POLICY, optional_header
from quartapp.identity import COOKIE_NAME
from quartapp.providers.scripted import ScriptedProvider
from tests.conftest import Server
from tests.helpers import assert_error
from tests.security.support import browser, settings, start, start_body

API_CSP = "default-src 'none'; frame-ancestors 'none'"
API_FA = ["'none'"]
HTTPS = {"X-Forwarded-Proto": "https"}
PAGE = f"""<!doctype html>
<html><head>
<meta property="csp-nonce" nonce="{BUILD_NONCE_MARK}">
<script type="module" src="/assets/index-abc.js" nonce="{BUILD_NONCE_MARK}"></script>
<link rel="stylesheet" href="/assets/index-abc.css" nonce="{BUILD_NONCE_MARK}">
</head><body><div id="root"></div></body></html>
"""


@pytest.fixture(name="dist", scope="module")
def _dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    (dist / "index.html").write_text(PAGE)
    (dist / "assets").mkdir()
    (dist / "assets" / "index-abc.js").write_text("export {};\n")
    return dist


@pytest.fixture(name="srv", scope="module")
async def _srv(dist: Path) -> AsyncIterator[Server]:
    """Default settings: no proxy trusted, docs off, frames refused."""
    server = await start(settings(FRONTEND_DIST=str(dist)))
    yield server
    await server.stop()


@pytest.fixture(name="proxied", scope="module")
async def _proxied(dist: Path) -> AsyncIterator[Server]:
    """Behind one trusted TLS proxy, docs on, framing by our own origin and one LMS allowed."""
    config = settings(
        FRONTEND_DIST=str(dist),
        PROXY_TRUSTED_HOPS=1,
        DOCS_ENABLED=True,
        FRAME_ANCESTORS="self https://lms.example.com",
    )
    server = await start(config)
    yield server
    await server.stop()


def directives(response: httpx2.Response) -> dict[str, list[str]]:
    """The one CSP of the response, as ``directive -> sources``."""
    (policy,) = response.headers.get_list("content-security-policy")
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"{name} twice in {policy}"
        parsed[name] = sources
    return parsed


def assert_browser_headers(response: httpx2.Response, *, hsts: str | None = None) -> None:
    """nosniff and the referrer policy, once each; HSTS exactly when expected; no ``Server``
    header naming the software."""
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]
    assert "server" not in response.headers
    assert response.headers.get_list("referrer-policy") == ["strict-origin-when-cross-origin"]
    assert response.headers.get("strict-transport-security") == hsts


def assert_no_inline_script(policy: dict[str, list[str]]) -> None:
    everything = [source for sources in policy.values() for source in sources]
    assert "'unsafe-eval'" not in everything and "'unsafe-hashes'" not in everything
    for directive in ("default-src", "script-src", "script-src-elem", "script-src-attr"):
        assert "'unsafe-inline'" not in policy.get(directive, []), policy


# -- the page ---------------------------------------------------------------------------


async def test_the_page_has_a_strict_policy_and_a_fresh_nonce_each_time(srv: Server) -> None:
    nonces = []
    async with browser(srv) as tab:
        for _ in range(2):
            response = await tab.get("/")
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
            policy = directives(response)
            assert_no_inline_script(policy)
            assert policy["default-src"] == ["'none'"]
            assert policy["script-src"] == ["'self'"]
            (nonce_source,) = [s for s in policy["style-src"] if s.startswith("'nonce-")]
            assert policy["style-src"] == ["'self'", nonce_source]  # no 'unsafe-inline' for style either
            assert "style-src-attr" not in policy and "style-src-elem" not in policy
            nonce = nonce_source.removeprefix("'nonce-").removesuffix("'")
            assert re.fullmatch(r"[A-Za-z0-9_-]{22}", nonce), nonce  # 128 bits
            for name, sources in {
                "connect-src": ["'self'"],
                "img-src": ["'self'", "data:"],
                "object-src": ["'none'"],
                "base-uri": ["'none'"],
                "form-action": ["'self'"],
                "frame-ancestors": ["'none'"],
            }.items():
                assert policy[name] == sources, (name, policy)
            assert BUILD_NONCE_MARK not in response.text
            assert response.text.count(f'nonce="{nonce}"') == 3  # the meta, the script and the sheet
            # no validators: a 304 would keep an old body whose nonce the new policy does not name
            assert "etag" not in response.headers and "last-modified" not in response.headers
            assert_browser_headers(response)
            nonces.append(nonce)
        asset = await tab.get("/assets/index-abc.js")
        assert asset.status_code == 200 and directives(asset) == {"default-src": ["'none'"], "frame-ancestors": API_FA}
        assert_browser_headers(asset)
    assert nonces[0] != nonces[1]


async def test_frame_ancestors_comes_from_the_setting(proxied: Server) -> None:
    async with browser(proxied) as tab:
        for path in ("/", "/api/streams/AAAAAAAAAAAAAAAAAAAAAA", "/nowhere"):
            response = await tab.get(path)
            assert directives(response)["frame-ancestors"] == ["'self'", "https://lms.example.com"], path


# -- the API, SSE and errors ------------------------------------------------------------


async def test_an_api_json_response_may_load_nothing(srv: Server) -> None:
    async with srv.client() as client:
        response = await client.post("/api/ai-block/ask_question", json={"input": "Why is the sky blue?"})
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
        assert response.headers.get_list("content-security-policy") == [API_CSP]
        assert_browser_headers(response)
        health = await client.get("/healthz")
        assert health.headers.get_list("content-security-policy") == [API_CSP]
        assert_browser_headers(health)
        document = await client.get("/openapi.json")
        assert document.status_code == 200 and document.json()["openapi"].startswith("3.")
        assert document.headers.get_list("content-security-policy") == [API_CSP]
        assert_browser_headers(document)


async def test_an_sse_stream_gets_them_once_before_the_first_event(srv: Server) -> None:
    params = {"question": "What is a volcano?", "max_tokens": 40}
    async with srv.client() as client, client.stream("GET", "/api/stream/ai-block/ask_question", params=params) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get_list("content-security-policy") == [API_CSP]
        assert_browser_headers(r)
        body = b"".join([chunk async for chunk in r.aiter_bytes()]).decode()
    assert "event: done" in body and "nosniff" not in body  # nothing rides along with the events


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),  # no route: the standalone app's own error
        ("GET", "/api/streams/AAAAAAAAAAAAAAAAAAAAAA", 404),  # an unknown stream: the extension's
        ("DELETE", "/api/streams", 405),
        ("GET", "/assets/" + "a" * 300, 404),  # the page's blueprint
    ],
)
async def test_an_error_gets_them_too(srv: Server, method: str, path: str, status: int) -> None:
    async with srv.client() as client:
        response = await client.request(method, path)
    assert_error(response, status)
    assert response.headers.get_list("content-security-policy") == [API_CSP]
    assert_browser_headers(response)


# -- HSTS and the cookie over https -----------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/healthz", "/nowhere", "/api/streams/AAAAAAAAAAAAAAAAAAAAAA"])
async def test_hsts_only_over_https_through_a_trusted_proxy(srv: Server, proxied: Server, path: str) -> None:
    async with browser(proxied) as tab:
        assert_browser_headers(await tab.get(path, headers=HTTPS), hsts="max-age=31536000")
        assert_browser_headers(await tab.get(path))  # the proxy said nothing: plain http
    async with browser(srv) as tab:
        assert_browser_headers(await tab.get(path, headers=HTTPS))  # an untrusted client's claim changes nothing


async def test_hsts_max_age_is_the_setting_and_zero_turns_it_off(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(PAGE)
    for max_age, expected in ((600, "max-age=600"), (0, None)):
        client = create_app(settings(HSTS_MAX_AGE_S=max_age, FRONTEND_DIST=str(tmp_path))).test_client()
        for path in ("/", "/healthz", "/nowhere"):
            response = await client.get(path, scheme="https")
            assert response.headers.get("Strict-Transport-Security") == expected, (max_age, path)
            assert (await client.get(path)).headers.get("Strict-Transport-Security") is None


def secure(response: httpx2.Response) -> bool:
    (cookie,) = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{COOKIE_NAME}=")]
    return "Secure" in [part.strip() for part in cookie.split(";")]


async def test_the_page_cookie_is_secure_over_https_only(srv: Server, proxied: Server) -> None:
    async with browser(proxied) as tab:
        assert secure(await tab.get("/", headers=HTTPS))
    async with browser(proxied) as tab:
        assert not secure(await tab.get("/"))
    async with browser(srv) as tab:
        assert not secure(await tab.get("/", headers=HTTPS))
    async with browser(proxied) as tab:  # an API route's first answer too
        created = await tab.post("/api/streams", json=start_body(max_tokens=2), headers=HTTPS)
        assert created.status_code == 201 and secure(created)


async def _handshake_cookie(server: Server, headers: dict[str, str]) -> str:
    async with connect(f"{server.ws_url}/ws/streams", additional_headers=headers) as ws:
        assert ws.response is not None
        cookie: str = ws.response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    return cookie


async def test_the_websocket_handshake_cookie_is_secure_behind_a_tls_proxy(srv: Server, proxied: Server) -> None:
    # a TLS proxy forwards wss as X-Forwarded-Proto: https (the scheme it was reached by), not "wss"
    assert "Secure" in await _handshake_cookie(proxied, HTTPS)
    assert "Secure" not in await _handshake_cookie(proxied, {})
    assert "Secure" not in await _handshake_cookie(srv, HTTPS)


async def _accept_headers(app: Quart, scheme: str) -> dict[str, str]:
    """The headers of the socket's accept, the ASGI scope as Hypercorn makes it (``wss`` over TLS)."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},  # as Hypercorn says: accept headers supported
        "scheme": scheme,
        "http_version": "1.1",
        "path": "/ws/streams",
        "raw_path": b"/ws/streams",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 443),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    }
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    accepted: dict[str, str] = {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            accepted.update((k.decode().lower(), v.decode()) for k, v in message.get("headers", []))
            inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})

    async with asyncio.timeout(5):
        await app(scope, inbox.get, send)  # type: ignore[arg-type]
    return accepted


async def test_the_websocket_handshake_cookie_is_secure_over_wss() -> None:
    app = create_app(settings(), provider=ScriptedProvider(0))
    async with app.test_app():
        assert "Secure" in (await _accept_headers(app, "wss"))["set-cookie"]
        assert "Secure" not in (await _accept_headers(app, "ws"))["set-cookie"]


# -- /docs ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/docs/", "/docs/init.js", "/docs/assets/swagger-ui-bundle.js"])
async def test_docs_are_a_json_404_by_default(srv: Server, path: str) -> None:
    async with srv.client() as client:
        response = await client.get(path)
    assert_error(response, 404, "not_found")
    assert response.headers.get_list("content-security-policy") == [API_CSP]


async def test_docs_when_enabled_come_from_us_under_a_self_only_policy(proxied: Server) -> None:
    async with browser(proxied) as tab:
        page = await tab.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = directives(page)
        assert page.headers["content-security-policy"].startswith(DOCS_POLICY)
        assert_no_inline_script(policy)
        assert "'unsafe-inline'" not in policy["style-src"]
        assert policy["script-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
        assert_browser_headers(page)
        html = page.text
        assert not re.search(r"(?i)(https?:)?//[a-z0-9]", html), "the docs page names another host"
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
        assert scripts and all('src="/' in attrs and not body.strip() for attrs, body in scripts)  # no inline script
        assert "style=" not in html and "<style" not in html
        assets = re.findall(r'(?:src|href)="(/[^"]+)"', html)
        assert "/docs/assets/swagger-ui-bundle.js" in assets and "/docs/init.js" in assets
        for path in assets:
            asset = await tab.get(path)
            assert asset.status_code == 200 and len(asset.content) > 0, path
            assert_browser_headers(asset)
        init = (await tab.get("/docs/init.js")).text
        assert '"/openapi.json"' in init and "validatorUrl: null" in init
        bundle = await tab.get("/docs/assets/swagger-ui-bundle.js")
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert "openapi" in (await tab.get("/openapi.json")).json()  # the contract, where it always was
        assert_error(await tab.get("/docs/assets/oauth2-redirect.html"), 404, "not_found")  # only what we list
        assert_error(await tab.get("/docs/assets/..%2F__init__.py"), 404)


# -- a host app keeps its own responses -------------------------------------------------


async def test_a_host_apps_own_routes_get_none_of_it() -> None:
    app = Quart(__name__)

    @app.get("/home")
    async def home() -> str:
        return "<p>the host's page</p>"

    before = dict(app.after_request_funcs)
    AIBlocks(app, url_prefix="/ai", settings=settings(), provider=ScriptedProvider(0))
    assert app.after_request_funcs.get(None) == before.get(None)  # nothing app-wide
    client = app.test_client()
    async with app.test_app():
        for path in ("/home", "/nowhere"):
            response = await client.get(path, scheme="https")
            for name in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"):
                assert name not in response.headers, (path, name)
            assert "Strict-Transport-Security" not in response.headers
        ours = await client.get("/ai/healthz", scheme="https")
        assert ours.headers["Content-Security-Policy"] == API_CSP
        assert ours.headers["X-Content-Type-Options"] == "nosniff"
        assert ours.headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [("Origin", "https://a.example")],
        [("origin", "https://a.example"), ("ORIGIN", "https://b.example")],  # the first, any case
        [("Host", "a"), ("Sec-Fetch-Site", " Cross-Site ")],
        [("X-Request-ID", "")],  # present and empty is not missing
    ],
)
@pytest.mark.parametrize("name", ["Origin", "sec-fetch-site", "X-Request-ID", "Authorization"])
def test_an_optional_header_reads_as_werkzeugs_get(pairs: list[tuple[str, str]], name: str) -> None:
    """``quartapp.headers.optional_header`` (no KeyError built for a missing header) gives what
    ``Headers.get`` gives: case-insensitive, the first value, None when it is missing."""
    headers = Headers(pairs)
    assert optional_header(headers, name) == headers.get(name)
