"""S3/S4: identities and ownership. Each browser gets its own signed session, each API key is its
own client, and another client's stream is a 404 exactly like a missing one, on every route and
over the WebSocket."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from itsdangerous import TimestampSigner
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from quartapp.app import create_app
from quartapp.identity import COOKIE_NAME
from tests.conftest import Server
from tests.helpers import TEST_API_KEY, WSClient, assert_error, read_sse
from tests.security.support import browser, settings, start, start_body

SECOND_KEY = "second-key-abcdefghijklmnop"
SECRET = "a-test-secret-key-that-is-long-enough"
MISSING = "AAAAAAAAAAAAAAAAAAAAAA"  # a well-formed id nobody has


@pytest.fixture(name="srv", scope="module")
async def _srv() -> AsyncIterator[Server]:
    server = await start(
        settings(API_KEYS=f"{TEST_API_KEY},{SECOND_KEY}", SECRET_KEY=SECRET, SCRIPTED_TOKEN_INTERVAL_MS=20.0)
    )
    yield server
    await server.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def running_stream(client: httpx2.AsyncClient) -> str:
    response = await client.post("/api/streams", json=start_body(max_tokens=500))  # 10 s of tokens
    assert response.status_code == 201, response.text
    stream_id: str = response.json()["stream_id"]
    return stream_id


def same_error(a: httpx2.Response, b: httpx2.Response) -> None:
    """Two answers a client cannot tell apart: status, headers that matter, body."""
    assert a.status_code == b.status_code == 404
    assert a.json() == b.json(), (a.text, b.text)
    assert a.headers["content-type"] == b.headers["content-type"]


# -- the session cookie ----------------------------------------------------------------


async def test_a_browser_gets_a_signed_httponly_samesite_cookie_once(srv: Server) -> None:
    async with browser(srv) as tab:
        created = await tab.post("/api/streams", json=start_body(max_tokens=2))
        assert created.status_code == 201
        cookie = created.headers["set-cookie"]
        attributes = [part.strip() for part in cookie.split(";")]
        assert attributes[0].startswith(f"{COOKIE_NAME}=")
        assert {"HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"} <= set(attributes)
        assert "Secure" not in attributes  # plain http here; see the https test
        assert "private" in created.headers["cache-control"]  # never stored by a shared cache
        value = attributes[0].split("=", 1)[1]
        assert TimestampSigner(SECRET, salt="ail-session").validate(value)
        again = await tab.get(created.json()["status_url"])
        assert again.status_code == 200 and "set-cookie" not in again.headers  # the same session


async def test_the_cookie_is_secure_over_https() -> None:
    app = create_app(settings(SECRET_KEY=SECRET))
    client = app.test_client()
    response = await client.get(f"/api/streams/{MISSING}", scheme="https")
    assert response.status_code == 404
    assert "Secure" in [p.strip() for p in response.headers["Set-Cookie"].split(";")]
    # behind a TLS proxy, trusted for one hop: X-Forwarded-Proto decides
    proxied = create_app(settings(SECRET_KEY=SECRET, PROXY_TRUSTED_HOPS=1)).test_client()
    response = await proxied.get(f"/api/streams/{MISSING}", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in [p.strip() for p in response.headers["Set-Cookie"].split(";")]
    # not trusted (the default): a client's own X-Forwarded-Proto changes nothing
    response = await app.test_client().get(f"/api/streams/{MISSING}", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in [p.strip() for p in response.headers["Set-Cookie"].split(";")]


@pytest.mark.parametrize(
    "cookie",
    [
        "tampered",
        "expired",
        "other-key",
        "garbage",
        "empty",
    ],
)
async def test_a_bad_cookie_is_a_new_stranger(srv: Server, cookie: str) -> None:
    async with browser(srv) as alice:
        stream_id = await running_stream(alice)
        value = alice.cookies[COOKIE_NAME]
        session_id = value.split(".")[0]
        forged = {
            "tampered": value[:-2] + ("AA" if not value.endswith("AA") else "BB"),
            "expired": _signed_at(session_id, SECRET, 1_000_000_000),
            "other-key": TimestampSigner("another-secret-key-entirely", salt="ail-session").sign(session_id).decode(),
            "garbage": "not.a.cookie",
            "empty": "",
        }[cookie]
        async with browser(srv) as mallory:
            response = await mallory.get(f"/api/streams/{stream_id}", headers={"Cookie": f"{COOKIE_NAME}={forged}"})
            assert_error(response, 404, "stream_not_found", "stream_id")
            assert response.headers["set-cookie"].startswith(f"{COOKIE_NAME}=")  # a new session
            assert mallory.cookies[COOKIE_NAME] != value
        await alice.post(f"/api/streams/{stream_id}/stop")


def _signed_at(session_id: str, secret: str, timestamp: int) -> str:
    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return timestamp

    return Then(secret, salt="ail-session").sign(session_id).decode()


# -- API keys --------------------------------------------------------------------------


async def test_each_api_key_is_its_own_client_and_the_owner_is_a_hash(srv: Server) -> None:
    async with srv.client() as one, srv.client(headers=bearer(SECOND_KEY)) as two, browser(srv) as tab:
        stream_id = await running_stream(one)
        assert (await one.get(f"/api/streams/{stream_id}")).status_code == 200
        for other in (two, tab):
            assert_error(await other.get(f"/api/streams/{stream_id}"), 404, "stream_not_found", "stream_id")
        info = await srv.manager.log.info(stream_id)
        assert info is not None and info.owner.startswith("k:")
        assert TEST_API_KEY not in info.owner and len(info.owner) == 34
        assert "set-cookie" not in (await one.get(f"/api/streams/{stream_id}")).headers  # keys need no cookie
        await one.post(f"/api/streams/{stream_id}/stop")


@pytest.mark.parametrize("value", ["Bearer wrong-key-0123456789abcdef", "Bearer", "bearer " + TEST_API_KEY[:-1]])
async def test_an_unknown_bearer_key_is_401_never_a_fallback(srv: Server, value: str) -> None:
    calls = srv.provider.started
    async with browser(srv, headers={"Authorization": value}) as client:
        response = await client.post("/api/streams", json=start_body())
        assert_error(response, 401, "invalid_api_key", None)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "set-cookie" not in response.headers
    with pytest.raises(InvalidStatus) as refused:
        async with connect(srv.ws_url + "/ws/streams", additional_headers={"Authorization": value}, open_timeout=5):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_api_key"
    assert srv.provider.started == calls


async def test_a_non_bearer_authorization_header_is_not_an_identity(srv: Server) -> None:
    async with browser(srv, headers={"Authorization": "Basic dXNlcjpwYXNz"}) as client:
        response = await client.post("/api/streams", json=start_body(max_tokens=2))
        assert response.status_code == 201 and "set-cookie" in response.headers  # an anonymous session


# -- ownership over HTTP -------------------------------------------------------------------


async def test_another_browsers_stream_is_a_404_like_a_missing_one(srv: Server) -> None:
    async with browser(srv) as alice, browser(srv) as mallory:
        stream_id = await running_stream(alice)
        first = await read_sse(alice, f"/api/streams/{stream_id}/events", stop_after=2)
        cursor = first.last_id
        for method, path in (
            ("GET", "/api/streams/{}"),
            ("GET", "/api/streams/{}/events"),
            ("POST", "/api/streams/{}/stop"),
        ):
            theirs = await mallory.request(method, path.format(stream_id))
            nobodys = await mallory.request(method, path.format(MISSING))
            assert_error(theirs, 404, "stream_not_found", "stream_id")
            same_error(theirs, nobodys)
            resumed = await mallory.request(method, path.format(stream_id), headers={"Last-Event-ID": cursor})
            same_error(resumed, nobodys)
        # the one-shot route resumes by cursor alone: the cursor of someone else's stream is gone too
        url = "/api/stream/ai-block/ask_question"
        theirs = await mallory.get(url, headers={"Last-Event-ID": cursor})
        nobodys = await mallory.get(url, headers={"Last-Event-ID": "0123456789ab-3"})
        assert_error(theirs, 404, "stream_not_found", "Last-Event-ID")
        same_error(theirs, nobodys)
        # mallory's stop did nothing: alice's stream still runs, and alice can stop it
        status = (await alice.get(f"/api/streams/{stream_id}")).json()
        assert status["status"] == "running"
        stopped = await alice.post(f"/api/streams/{stream_id}/stop")
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"


async def test_stream_ids_are_128_random_bits(srv: Server) -> None:
    async with srv.client() as client:
        ids = set()
        for _ in range(5):
            created = (await client.post("/api/streams", json=start_body(max_tokens=1))).json()
            ids.add(created["stream_id"])
        assert len(ids) == 5
        for stream_id in ids:
            assert len(base64.urlsafe_b64decode(stream_id + "==")) == 16


# -- ownership over the WebSocket ----------------------------------------------------------------


def _without_ids(frame: dict[str, Any]) -> dict[str, Any]:
    return {**frame, "stream_id": None, "request_id": None}


async def test_another_clients_stream_over_the_socket_is_rejected_like_a_missing_one(srv: Server) -> None:
    url = srv.ws_url + "/ws/streams"
    async with browser(srv) as alice:
        stream_id = await running_stream(alice)
        alice_cookie = alice.cookies[COOKIE_NAME]
        mallory = await WSClient.open(url, additional_headers={})  # a browser without alice's cookie
        async with mallory:
            session = mallory.connection.response
            assert session is not None and session.headers["Set-Cookie"].startswith(f"{COOKIE_NAME}=")
            for action in ("resume", "stop"):
                theirs = await mallory.request({"type": action, "stream_id": stream_id, "request_id": "x"})
                nobodys = await mallory.request({"type": action, "stream_id": MISSING, "request_id": "y"})
                assert theirs["type"] == "rejected" and theirs["error"]["code"] == "stream_not_found", theirs
                assert _without_ids(theirs) == _without_ids(nobodys)
        async with await WSClient.open(url, additional_headers={"Authorization": f"Bearer {SECOND_KEY}"}) as other:
            theirs = await other.request({"type": "resume", "stream_id": stream_id, "request_id": "z"})
            assert theirs["type"] == "rejected" and theirs["error"]["code"] == "stream_not_found"
        # alice's own socket (her cookie, as a browser sends it) resumes and stops it
        async with await WSClient.open(url, additional_headers={"Cookie": f"{COOKIE_NAME}={alice_cookie}"}) as own:
            reply = await own.request({"type": "resume", "stream_id": stream_id, "request_id": "mine"})
            assert reply["type"] == "accepted", reply
            reply = await own.request({"type": "stop", "stream_id": stream_id, "request_id": "stop"})
            assert reply["type"] == "accepted", reply
        assert (await alice.get(f"/api/streams/{stream_id}")).json()["status"] == "stopped"
