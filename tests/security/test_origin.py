"""S1/S2: cross-site requests cannot start generation or open the socket; CORS is exact.

Every refusal is checked to start nothing: the recording provider was not called and no
stream was created (the started-streams counter did not move).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import Server
from tests.helpers import TEST_API_KEY, assert_error
from tests.security.support import new_request_id, provider_called_for, settings, start, start_body

APP = "https://app.example.com"
PARTNER = "https://partner.example.org"


@pytest.fixture(name="srv", scope="module")
async def _srv() -> AsyncIterator[Server]:
    """ALLOWED_ORIGINS empty: the request's own origin only."""
    server = await start(settings())
    yield server
    await server.stop()


@pytest.fixture(name="listed", scope="module")
async def _listed() -> AsyncIterator[Server]:
    """An exact allow-list, and CORS for one partner."""
    server = await start(settings(ALLOWED_ORIGINS=APP, CORS_ORIGINS=PARTNER))
    yield server
    await server.stop()


def own(server: Server) -> str:
    return server.base_url


async def assert_started(server: Server, request_id: str, expected: bool) -> None:
    """The provider was (not) called for this request (refusals wait a moment: nothing may come late)."""
    called = await provider_called_for(server, request_id, wait=2.0 if expected else 0.1)
    assert called == expected, f"provider called for {request_id}: {called}, expected {expected}"


# (headers, allowed?) for the server with the default policy; "{own}" is the server's origin
DEFAULT_CASES: list[tuple[str, dict[str, str], bool]] = [
    ("no browser headers (an API client)", {}, True),
    ("same origin", {"Origin": "{own}"}, True),
    ("same origin, Sec-Fetch-Site same-origin", {"Origin": "{own}", "Sec-Fetch-Site": "same-origin"}, True),
    ("typed in the address bar", {"Sec-Fetch-Site": "none"}, True),
    ("evil origin", {"Origin": "https://evil.example"}, False),
    ("evil origin posing as a subdomain", {"Origin": "{own}.evil.example"}, False),
    ("same host, other port", {"Origin": "http://127.0.0.1:1"}, False),
    ("same port, other host name", {"Origin": "http://localhost:{port}"}, False),
    ("https instead of http", {"Origin": "https://127.0.0.1:{port}"}, False),
    ("null origin (sandboxed frame, file:)", {"Origin": "null"}, False),
    ("an origin with a path", {"Origin": "{own}/x"}, False),
    ("cross-site fetch metadata alone", {"Sec-Fetch-Site": "cross-site"}, False),
    ("cross-site with a forged same Origin", {"Origin": "{own}", "Sec-Fetch-Site": "cross-site"}, False),
    ("same-site from an unlisted origin", {"Origin": "https://other.127.0.0.1", "Sec-Fetch-Site": "same-site"}, False),
    ("same-site without an Origin", {"Sec-Fetch-Site": "same-site"}, False),
    ("unknown fetch metadata", {"Sec-Fetch-Site": "somewhere"}, False),
]


def fill(headers: dict[str, str], server: Server) -> dict[str, str]:
    port = server.base_url.rsplit(":", 1)[1]
    return {k: v.replace("{own}", own(server)).replace("{port}", port) for k, v in headers.items()}


ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/streams", {"json": start_body(max_tokens=2)}),
    ("POST", "/api/ai-block/ask_question", {"json": {"input": "What is a volcano?", "options": {"max_tokens": 2}}}),
    ("GET", "/api/stream/ai-block/ask_question", {"params": {"question": "What is a volcano?", "max_tokens": 2}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@pytest.mark.parametrize(("name", "headers", "allowed"), DEFAULT_CASES, ids=[c[0] for c in DEFAULT_CASES])
async def test_starting_generation_checks_origin_and_fetch_metadata(
    srv: Server, method: str, path: str, kwargs: dict[str, Any], name: str, headers: dict[str, str], allowed: bool
) -> None:
    request_id = new_request_id()
    sent = {**fill(headers, srv), "Authorization": f"Bearer {TEST_API_KEY}", "X-Request-ID": request_id}
    async with srv.client(headers=sent) as client:
        response = await client.request(method, path, **kwargs)
        if allowed:
            assert response.status_code in (200, 201), response.text
        else:
            assert_error(response, 403, "origin_not_allowed", "Origin")
        assert response.headers["x-request-id"] == request_id
    await assert_started(srv, request_id, allowed)


async def test_a_cross_site_form_post_is_refused_before_anything_else(srv: Server) -> None:
    """The classic CSRF: a form on another site posting to us (SameSite=Lax keeps the cookie
    away too; this refusal does not rely on it)."""
    request_id = new_request_id()
    async with srv.client(headers={"X-Request-ID": request_id}) as client:
        response = await client.post(
            "/api/streams",
            content=b"block_type=ask_question&input=hi",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "https://evil.example",
                "Sec-Fetch-Site": "cross-site",
                "Sec-Fetch-Mode": "navigate",
            },
        )
        assert_error(response, 403, "origin_not_allowed", "Origin")
        # text/plain is a "simple" request too (no preflight): still refused
        response = await client.post(
            "/api/streams",
            content=json.dumps(start_body()).encode(),
            headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
        )
        assert_error(response, 403, "origin_not_allowed", "Origin")
    await assert_started(srv, request_id, False)


async def test_stop_is_cross_site_checked_too(srv: Server) -> None:
    async with srv.client() as client:
        stream_id = (await client.post("/api/streams", json=start_body(max_tokens=2))).json()["stream_id"]
        response = await client.post(f"/api/streams/{stream_id}/stop", headers={"Origin": "https://evil.example"})
        assert_error(response, 403, "origin_not_allowed", "Origin")


# -- the WebSocket handshake ------------------------------------------------------------


async def handshake(server: Server, headers: dict[str, str]) -> int:
    """Open the socket with these handshake headers and ask for a stream; the HTTP status of the
    answer (101 = accepted). The provider must be called exactly when the socket was accepted."""
    request_id = new_request_id("ws")
    headers = {**headers, "X-Request-ID": request_id}
    try:
        async with connect(server.ws_url + "/ws/streams", additional_headers=headers, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "start", "block_type": "ask_question", "input": "hi"}))
            reply = json.loads(await ws.recv())
            assert reply["type"] == "accepted", reply
            status = 101
    except InvalidStatus as exc:
        body = json.loads(exc.response.body or b"{}")
        assert body["error"]["code"] == "origin_not_allowed", body
        assert exc.response.headers["Content-Type"].startswith("application/json")
        status = exc.response.status_code
    await assert_started(server, request_id, status == 101)
    return status


@pytest.mark.parametrize(("name", "headers", "allowed"), DEFAULT_CASES, ids=[c[0] for c in DEFAULT_CASES])
async def test_the_websocket_handshake_checks_origin(
    srv: Server, name: str, headers: dict[str, str], allowed: bool
) -> None:
    """``websockets`` sends no Origin of its own; a browser always does. A refused handshake is
    answered with HTTP 403 before the socket is accepted, so no message is ever read."""
    assert await handshake(srv, fill(headers, srv)) == (101 if allowed else 403)


@pytest.mark.parametrize(
    ("origin", "site", "allowed"),
    [
        (APP, None, True),
        (APP, "same-origin", True),
        (APP, "same-site", True),
        (APP.upper(), None, True),  # scheme and host are case-insensitive
        (APP + ":443", None, True),  # the default port spelled out
        ("http://app.example.com", None, False),
        ("https://app.example.com.evil.example", None, False),
        ("https://evil-app.example.com", None, False),
        ("https://app.example.com:8443", None, False),
        ("https://sub.app.example.com", None, False),
        ("https://example.com", None, False),
        (None, "same-site", False),
        (APP, "cross-site", False),  # listed for ALLOWED_ORIGINS, not for CORS: not cross-site
        ("{own}", None, False),  # with an allow-list, the server's own address is not implied
    ],
)
async def test_an_allow_list_matches_exactly(
    listed: Server, origin: str | None, site: str | None, allowed: bool
) -> None:
    headers = {}
    if origin is not None:
        headers["Origin"] = origin.replace("{own}", listed.base_url)
    if site is not None:
        headers["Sec-Fetch-Site"] = site
    request_id = new_request_id()
    sent = {**headers, "Authorization": f"Bearer {TEST_API_KEY}", "X-Request-ID": request_id}
    async with listed.client(headers=sent) as client:
        response = await client.post("/api/streams", json=start_body(max_tokens=2))
    assert response.status_code == (201 if allowed else 403), response.text
    await assert_started(listed, request_id, allowed)
    assert await handshake(listed, headers) == (101 if allowed else 403)


# -- CORS -----------------------------------------------------------------------------------


async def test_no_cors_by_default(srv: Server) -> None:
    async with srv.client() as client:
        for origin in ("https://evil.example", srv.base_url, "null"):
            response = await client.get("/healthz", headers={"Origin": origin})
            assert "access-control-allow-origin" not in response.headers
            preflight = await client.options(
                "/api/streams", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
            )
            assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(
    ("origin", "echoed"),
    [(PARTNER, True), (APP, False), ("https://evil.example", False), ("null", False), ("*", False)],
)
async def test_cors_echoes_exact_listed_origins_with_credentials(listed: Server, origin: str, echoed: bool) -> None:
    async with listed.client() as client:
        response = await client.get("/healthz", headers={"Origin": origin})
        assert "Origin" in response.headers.get("vary", "")
        preflight = await client.options(
            "/api/streams",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        for answer in (response, preflight):
            assert answer.headers.get("access-control-allow-origin") != "*"
            if echoed:
                assert answer.headers["access-control-allow-origin"] == origin
                assert answer.headers["access-control-allow-credentials"] == "true"
            else:
                assert "access-control-allow-origin" not in answer.headers
                assert "access-control-allow-credentials" not in answer.headers
        if echoed:
            assert "POST" in preflight.headers["access-control-allow-methods"]
            assert "Content-Type" in preflight.headers["access-control-allow-headers"]


async def test_a_cors_partner_may_start_cross_site_and_a_preflight_starts_nothing(listed: Server) -> None:
    request_id = new_request_id()
    async with listed.client() as client:
        preflight = await client.options(
            "/api/streams",
            headers={"Origin": PARTNER, "Access-Control-Request-Method": "POST", "X-Request-ID": request_id},
        )
        assert preflight.status_code == 200
        await assert_started(listed, request_id, False)
        response = await client.post(
            "/api/streams", json=start_body(max_tokens=2), headers={"Origin": PARTNER, "Sec-Fetch-Site": "cross-site"}
        )
        assert response.status_code == 201, response.text
        assert response.headers["access-control-allow-origin"] == PARTNER
