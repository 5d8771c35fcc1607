"""S5/S7: start rate, concurrent streams, daily tokens, socket flood, max tokens, wall clock.

Each limit is checked for what gets through (exactly the allowed number), what the refusal
looks like (429, ``Retry-After``, the JSON error shape) and that a refused start never reached
the model (the recording provider has no call with the refused request's id). The concurrent
cap is also checked across two instances sharing one real Redis, and slots come back when a
stream ends, when its reader vanishes, and when the instance holding them dies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from quartapp.limits import LimitExceeded, Limits
from tests.conftest import Server
from tests.helpers import TEST_API_KEY, WSClient, assert_error, read_sse, terminal_of
from tests.redis_server import RedisServer
from tests.security.support import (
    browser,
    new_request_id,
    provider_called_for,
    recording,
    settings,
    start,
    start_body,
)

KEYS = [f"limits-key-{i}-0123456789abcdef" for i in range(6)]
ALL_KEYS = ",".join([TEST_API_KEY, *KEYS])


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_429(response: httpx2.Response, code: str) -> int:
    assert_error(response, 429, code, None)
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


async def post_start(server: Server, key: str | None, **options: Any) -> tuple[httpx2.Response, str]:
    request_id = new_request_id()
    headers = {"X-Request-ID": request_id, **(auth(key) if key else {})}
    async with server.client(headers=headers) as client:
        response = await client.post("/api/streams", json=start_body(**options))
    return response, request_id


async def tokens_used(client: httpx2.AsyncClient, events_url: str) -> int:
    """Read a stream to its end: the tokens (in + out) its usage says, as the budget charges them."""
    read = await read_sse(client, events_url)
    usage = terminal_of(read.events)["data"]["usage"]
    return int(usage["input_tokens"] + usage["output_tokens"])


async def stop_all(server: Server, key: str, stream_ids: list[str]) -> None:
    async with server.client(headers=auth(key)) as client:
        for stream_id in stream_ids:
            await client.post(f"/api/streams/{stream_id}/stop")


# -- start rate ------------------------------------------------------------------------------


@pytest.fixture(name="rated", scope="module")
async def _rated() -> AsyncIterator[Server]:
    server = await start(settings(API_KEYS=ALL_KEYS, RATE_LIMIT="5/minute", IP_RATE_LIMIT=""))
    yield server
    await server.stop()


async def test_a_burst_gets_exactly_the_allowed_starts(rated: Server) -> None:
    results = await asyncio.gather(*(post_start(rated, KEYS[0], max_tokens=1) for _ in range(12)))
    accepted = [r for r, _ in results if r.status_code == 201]
    refused = [(r, rid) for r, rid in results if r.status_code != 201]
    assert len(accepted) == 5, [r.status_code for r, _ in results]
    for response, request_id in refused:
        retry_after = assert_429(response, "rate_limited")
        assert retry_after <= 60
        assert not await provider_called_for(rated, request_id, wait=0.05)
    assert all(r.headers["ratelimit-limit"] == "5" for r in accepted)
    # the same limit covers every way to start: the one-shot route and the socket
    async with rated.client(headers=auth(KEYS[0])) as client:
        response = await client.get("/api/stream/ai-block/ask_question", params={"question": "hi"})
        assert_429(response, "rate_limited")
        response = await client.post("/api/ai-block/ask_question", json={"input": "hi"})
        assert_429(response, "rate_limited")
    async with await WSClient.open(rated.ws_url + "/ws/streams", additional_headers=auth(KEYS[0])) as ws:
        reply = await ws.request({"type": "start", "block_type": "ask_question", "input": "hi", "request_id": "w"})
        assert reply["type"] == "rejected" and reply["error"]["code"] == "rate_limited", reply
    # another client has its own allowance; reading is never limited
    response, _ = await post_start(rated, KEYS[1], max_tokens=1)
    assert response.status_code == 201
    async with rated.client(headers=auth(KEYS[0])) as client:
        for _ in range(10):
            assert (await client.get(f"/api/streams/{accepted[0].json()['stream_id']}")).status_code == 200


async def test_an_eventsource_reconnect_is_not_a_start(rated: Server) -> None:
    async with rated.client(headers=auth(KEYS[2])) as client:
        read = await read_sse(client, "/api/stream/ai-block/ask_question", params={"question": "hi", "max_tokens": 3})
        cursor = read.events[1]["id"]
        for _ in range(8):  # more reconnects than the 5 starts a minute
            again = await read_sse(client, "/api/stream/ai-block/ask_question", headers={"Last-Event-ID": cursor})
            assert again.status == 200


async def test_anonymous_sessions_share_their_address_limit() -> None:
    """A script that drops its cookie gets a new identity each time; the per-address limit holds it."""
    server = await start(settings(RATE_LIMIT="100/minute", IP_RATE_LIMIT="4/minute"))
    try:
        statuses = []
        for _ in range(7):
            async with browser(server) as fresh:  # a new cookie jar: a new anonymous identity
                response = await fresh.post("/api/streams", json=start_body(max_tokens=1))
                statuses.append(response.status_code)
                if response.status_code != 201:
                    assert_429(response, "rate_limited")
        assert statuses == [201] * 4 + [429] * 3
    finally:
        await server.stop()


# -- concurrent streams, in memory -------------------------------------------------------------


@pytest.fixture(name="capped", scope="module")
async def _capped() -> AsyncIterator[Server]:
    server = await start(
        settings(
            API_KEYS=ALL_KEYS,
            MAX_CONCURRENT_STREAMS=3,
            SCRIPTED_TOKEN_INTERVAL_MS=20.0,
            STREAM_DETACH_GRACE_S=0.5,
        )
    )
    yield server
    await server.stop()


async def test_the_concurrent_cap_holds_on_every_route(capped: Server) -> None:
    key = KEYS[0]
    running = []
    for _ in range(3):
        response, _ = await post_start(capped, key, max_tokens=500)  # 10 s each
        assert response.status_code == 201
        running.append(response.json()["stream_id"])
    response, request_id = await post_start(capped, key, max_tokens=500)
    assert_429(response, "too_many_streams")
    assert not await provider_called_for(capped, request_id, wait=0.1)
    async with capped.client(headers=auth(key)) as client:
        assert_429(await client.get("/api/stream/ai-block/quiz", params={"topic": "x"}), "too_many_streams")
        assert_429(await client.post("/api/ai-block/ask_question", json={"input": "x"}), "too_many_streams")
    async with await WSClient.open(capped.ws_url + "/ws/streams", additional_headers=auth(key)) as ws:
        reply = await ws.request({"type": "start", "block_type": "ask_question", "input": "hi", "request_id": "w"})
        assert reply["type"] == "rejected" and reply["error"]["code"] == "too_many_streams", reply
    # per client: another key is not held back
    other, _ = await post_start(capped, KEYS[1], max_tokens=1)
    assert other.status_code == 201
    # a stopped stream gives its slot back at once
    await stop_all(capped, key, running[:1])
    response, _ = await post_start(capped, key, max_tokens=500)
    assert response.status_code == 201, response.text
    running.append(response.json()["stream_id"])
    await stop_all(capped, key, running)


async def test_finished_streams_give_their_slots_back(capped: Server) -> None:
    key = KEYS[2]
    for _round in range(3):
        ids = []
        for _ in range(3):
            response, _ = await post_start(capped, key, max_tokens=2)
            assert response.status_code == 201, response.text
            ids.append(response.json()["stream_id"])
        async with capped.client(headers=auth(key)) as client:
            for stream_id in ids:
                read = await read_sse(client, f"/api/streams/{stream_id}/events")
                assert terminal_of(read.events)["type"] == "done"
        await _slots_free(capped, key)


async def _slots_free(server: Server, owner_key: str, timeout: float = 2.0) -> None:
    limits = server.services.limits
    owner = "k:" + __import__("hashlib").sha256(owner_key.encode()).hexdigest()[:32]
    deadline = time.monotonic() + timeout
    while await limits.slots.count(owner):
        assert time.monotonic() < deadline, "slots were not given back"
        await asyncio.sleep(0.01)


async def test_a_vanished_readers_slots_come_back_after_the_detach_grace(capped: Server) -> None:
    key = KEYS[3]
    async with capped.client(headers=auth(key)) as client:
        for _ in range(3):  # three tabs reading one-shot streams, then closed
            read = await read_sse(
                client, "/api/stream/ai-block/ask_question", params={"question": "hi", "max_tokens": 500}, stop_after=2
            )
            assert read.status == 200
    response, _ = await post_start(capped, key, max_tokens=1)
    assert_429(response, "too_many_streams")
    t0 = time.monotonic()
    while True:  # the detach grace is 0.5 s: the abandoned producers end, their slots come back
        response, _ = await post_start(capped, key, max_tokens=1)
        if response.status_code == 201:
            break
        assert time.monotonic() - t0 < 5, "slots of abandoned streams never came back"
        await asyncio.sleep(0.1)
    print(f"\nslots back {time.monotonic() - t0:.2f} s after the readers left (grace 0.5 s)")


# -- concurrent streams and start rate across two instances sharing Redis -------------------------


async def _pair(redis_server: RedisServer, **overrides: Any) -> tuple[Server, Server]:
    config = settings(
        API_KEYS=ALL_KEYS,
        STREAM_LOG="redis",
        REDIS_URL=redis_server.url,
        PRODUCER_LEASE_S=1.0,
        SCRIPTED_TOKEN_INTERVAL_MS=20.0,
        **overrides,
    )
    return await start(config), await start(config)


async def test_the_concurrent_cap_holds_across_two_instances(redis_server: RedisServer) -> None:
    a, b = await _pair(redis_server, MAX_CONCURRENT_STREAMS=3)
    key = KEYS[4]
    try:
        results = await asyncio.gather(*(post_start(a if i % 2 else b, key, max_tokens=500) for i in range(10)))
        accepted = [r.json()["stream_id"] for r, _ in results if r.status_code == 201]
        assert len(accepted) == 3, [r.status_code for r, _ in results]
        for response, request_id in results:
            if response.status_code != 201:
                assert_429(response, "too_many_streams")
                for server in (a, b):
                    assert not await provider_called_for(server, request_id, wait=0.02)
        # stopped through the other instance: the slot comes back for both
        await stop_all(b, key, accepted[:1])
        response, _ = await post_start(a, key, max_tokens=500)
        assert response.status_code == 201, response.text
        accepted.append(response.json()["stream_id"])
        response, _ = await post_start(b, key, max_tokens=500)
        assert_429(response, "too_many_streams")
        await stop_all(a, key, accepted)
    finally:
        await a.stop()
        await b.stop()


async def test_the_start_rate_holds_across_two_instances(redis_server: RedisServer) -> None:
    a, b = await _pair(redis_server, RATE_LIMIT="6/minute")
    try:
        results = await asyncio.gather(*(post_start(a if i % 2 else b, KEYS[5], max_tokens=1) for i in range(14)))
        statuses = sorted(r.status_code for r, _ in results)
        assert statuses == [201] * 6 + [429] * 8, statuses
        for response, _ in results:
            if response.status_code == 429:
                assert_429(response, "rate_limited")
    finally:
        await a.stop()
        await b.stop()


async def test_a_dead_instances_slots_expire_and_a_live_ones_do_not(redis_server: RedisServer) -> None:
    config = settings(STREAM_LOG="redis", REDIS_URL=redis_server.url, PRODUCER_LEASE_S=0.2, MAX_CONCURRENT_STREAMS=2)
    alive, dying, other = Limits.for_settings(config), Limits.for_settings(config), Limits.for_settings(config)
    try:
        held = [await alive.admit("k:alive"), await alive.admit("k:alive")]
        await dying.admit("k:dying")
        await dying.admit("k:dying")
        with pytest.raises(LimitExceeded):
            await other.admit("k:dying")
        await dying.close()  # the instance dies: it stops renewing and never releases
        await asyncio.sleep(3 * 0.2 * 2)  # two slot ttls
        lease = await other.admit("k:dying")  # its slots came back
        await other.release(lease)
        with pytest.raises(LimitExceeded) as refused:
            await other.admit("k:alive")  # renewed all along: still held
        assert refused.value.code == "too_many_streams"
        for lease in held:
            await alive.release(lease)
        await other.release(await other.admit("k:alive"))
    finally:
        for limits in (alive, other):
            await limits.close()


# -- daily token budget ------------------------------------------------------------------------


async def test_the_daily_budget_is_checked_before_the_model_and_charged_with_usage() -> None:
    budget = 200
    server = await start(settings(DAILY_TOKEN_BUDGET=budget, SCRIPTED_TOKEN_INTERVAL_MS=0.0))
    try:
        used = 0
        async with server.client() as client:
            for _ in range(10):
                request_id = new_request_id()
                response = await client.post(
                    "/api/streams", json=start_body(max_tokens=40), headers={"X-Request-ID": request_id}
                )
                if used >= budget:
                    assert_429(response, "budget_exceeded")
                    assert not await provider_called_for(server, request_id, wait=0.1)
                    break
                assert response.status_code == 201, (used, response.text)
                used += await tokens_used(client, response.json()["events_url"])
            else:
                pytest.fail("the budget never ran out")
            assert_429(await client.post("/api/ai-block/ask_question", json={"input": "x"}), "budget_exceeded")
            response = await client.get("/api/stream/ai-block/ask_question", params={"question": "x"})
            assert_429(response, "budget_exceeded")
        async with await WSClient.open(server.ws_url + "/ws/streams") as ws:
            reply = await ws.request({"type": "start", "block_type": "quiz", "input": "x", "request_id": "w"})
            assert reply["type"] == "rejected" and reply["error"]["code"] == "budget_exceeded", reply
        async with browser(server) as someone_else:
            assert (await someone_else.post("/api/streams", json=start_body(max_tokens=1))).status_code == 201
    finally:
        await server.stop()


async def test_the_redis_budget_is_shared(redis_server: RedisServer) -> None:
    config = settings(STREAM_LOG="redis", REDIS_URL=redis_server.url, DAILY_TOKEN_BUDGET=100)
    one, two = Limits.for_settings(config), Limits.for_settings(config)
    try:
        lease = await one.admit("k:budget")
        lease.tokens = 60
        await one.release(lease)
        lease = await two.admit("k:budget")  # 60 < 100
        lease.tokens = 60
        await two.release(lease)
        with pytest.raises(LimitExceeded) as refused:
            await one.admit("k:budget")  # 120 >= 100, seen by the other instance
        assert refused.value.code == "budget_exceeded" and refused.value.retry_after
    finally:
        await one.close()
        await two.close()


# -- per address: strangers who drop their cookie -------------------------------------------------


def stranger(server: Server, address: str = "127.0.0.1") -> httpx2.AsyncClient:
    """A browser-like client with an empty cookie jar (a new anonymous identity) from ``address``."""
    return browser(server, transport=httpx2.AsyncHTTPTransport(local_address=address))


async def test_a_client_dropping_its_cookie_is_held_by_the_address_cap() -> None:
    server = await start(
        settings(
            API_KEYS=ALL_KEYS, MAX_CONCURRENT_STREAMS=4, IP_MAX_CONCURRENT_STREAMS=3, SCRIPTED_TOKEN_INTERVAL_MS=20.0
        )
    )
    clients: list[tuple[httpx2.AsyncClient, str]] = []
    try:
        for _ in range(3):  # each with a fresh cookie: three identities, one address
            client = stranger(server)
            response = await client.post("/api/streams", json=start_body(max_tokens=500))  # 10 s each
            assert response.status_code == 201, response.text
            assert "ail_session" in response.headers["set-cookie"]
            clients.append((client, response.json()["stream_id"]))
        request_id = new_request_id()
        async with stranger(server) as fourth:
            response = await fourth.post("/api/streams", json=start_body(), headers={"X-Request-ID": request_id})
            assert_429(response, "address_too_many_streams")
            assert "network address" in response.json()["error"]["message"]
            assert not await provider_called_for(server, request_id, wait=0.1)
            one_shot = await fourth.get("/api/stream/ai-block/quiz", params={"topic": "x"})
            assert_429(one_shot, "address_too_many_streams")
        async with await WSClient.open(server.ws_url + "/ws/streams", additional_headers={}) as ws:
            reply = await ws.request({"type": "start", "block_type": "ask_question", "input": "hi", "request_id": "w"})
            assert reply["type"] == "rejected" and reply["error"]["code"] == "address_too_many_streams", reply
        async with stranger(server, "127.0.0.2") as elsewhere:  # another address is not held
            response = await elsewhere.post("/api/streams", json=start_body(max_tokens=1))
            assert response.status_code == 201, response.text
        other_key, _ = await post_start(server, KEYS[0], max_tokens=1)  # an API-key client is exempt
        assert other_key.status_code == 201, other_key.text
        client, stream_id = clients.pop(0)  # a stopped stream gives the address its slot back
        assert (await client.post(f"/api/streams/{stream_id}/stop")).status_code == 200
        await client.aclose()
        async with stranger(server) as again:
            response = await again.post("/api/streams", json=start_body(max_tokens=1))
            assert response.status_code == 201, response.text
    finally:
        for client, stream_id in clients:
            await client.post(f"/api/streams/{stream_id}/stop")
            await client.aclose()
        await server.stop()


async def test_the_address_budget_binds_every_identity_of_an_address() -> None:
    server = await start(settings(IP_DAILY_TOKEN_BUDGET=100, SCRIPTED_TOKEN_INTERVAL_MS=0.0))
    try:
        used = 0
        for _ in range(10):
            async with stranger(server) as client:
                response = await client.post("/api/streams", json=start_body(max_tokens=30))
                if used >= 100:
                    assert_429(response, "address_budget_exceeded")
                    assert int(response.headers["retry-after"]) <= 86_400
                    break
                assert response.status_code == 201, (used, response.text)
                used += await tokens_used(client, response.json()["events_url"])
        else:
            pytest.fail("the address budget never ran out")
        async with stranger(server, "127.0.0.2") as elsewhere:
            assert (await elsewhere.post("/api/streams", json=start_body(max_tokens=1))).status_code == 201
    finally:
        await server.stop()


async def test_the_address_cap_holds_across_two_instances(redis_server: RedisServer) -> None:
    a, b = await _pair(redis_server, IP_MAX_CONCURRENT_STREAMS=2)
    clients: list[tuple[httpx2.AsyncClient, str]] = []
    try:
        statuses = []
        for i in range(4):  # fresh identities, alternating instances, one address
            client = stranger(a if i % 2 else b)
            response = await client.post("/api/streams", json=start_body(max_tokens=500))
            statuses.append(response.status_code)
            if response.status_code == 201:
                clients.append((client, response.json()["stream_id"]))
            else:
                assert_429(response, "address_too_many_streams")
                await client.aclose()
        assert statuses == [201, 201, 429, 429]
    finally:
        for client, stream_id in clients:
            await client.post(f"/api/streams/{stream_id}/stop")
            await client.aclose()
        await a.stop()
        await b.stop()


# -- the socket's message rate -----------------------------------------------------------------


async def test_a_socket_flood_is_closed_1008_and_a_steady_client_is_not() -> None:
    server = await start(settings(WS_MAX_MESSAGES_PER_S=5.0))
    try:
        async with await WSClient.open(server.ws_url + "/ws/streams") as steady:
            for i in range(8):  # 4 a second: under the limit
                reply = await steady.request({"type": "stop", "stream_id": "none", "request_id": str(i)})
                assert reply["type"] == "rejected"
                await asyncio.sleep(0.25)
        async with await WSClient.open(server.ws_url + "/ws/streams") as flood:
            for _ in range(50):
                try:
                    await flood.send('{"type": "stop", "stream_id": "x"}')
                except Exception:
                    break
            code = await flood.wait_closed()
            assert code == 1008
            assert len([f for f in flood.frames if f["type"] == "rejected"]) <= 6  # the one-second burst
    finally:
        await server.stop()


async def test_a_flood_that_goes_on_after_its_1008_is_still_disconnected() -> None:
    """A client that keeps sending after the server closed it 1008 fills Hypercorn's message
    queue for an app that has ended: the connection's read loop then waited for room forever,
    and the app's end behind it, so the socket was never closed (hypercorn_fixes fix 10)."""
    server = await start(settings(WS_MAX_MESSAGES_PER_S=5.0))
    try:
        async with await WSClient.open(server.ws_url + "/ws/streams") as flood:
            for _ in range(3000):
                try:
                    await flood.send('{"type": "stop", "stream_id": "x"}')
                except Exception:
                    break
            assert await flood.wait_closed(10) == 1008
        async with await WSClient.open(server.ws_url + "/ws/streams") as steady:  # the server still answers
            reply = await steady.request({"type": "stop", "stream_id": "none", "request_id": "s"})
            assert reply["type"] == "rejected"
    finally:
        await server.stop()


# -- max tokens and the wall clock -----------------------------------------------------------------


async def test_max_tokens_is_clamped_before_the_model_sees_it() -> None:
    server = await start(settings(MAX_TOKENS=16, SCRIPTED_TOKEN_INTERVAL_MS=0.0))
    try:
        async with server.client() as client:
            response = await client.post("/api/streams", json=start_body(max_tokens=1_000_000))
            read = await read_sse(client, response.json()["events_url"])
            assert terminal_of(read.events)["data"]["usage"]["output_tokens"] <= 16
        assert [call.request.max_tokens for call in recording(server).calls] == [16]
    finally:
        await server.stop()


async def test_a_stream_ends_at_the_wall_clock_cap() -> None:
    server = await start(settings(STREAM_DEADLINE_S=0.3, SCRIPTED_TOKEN_INTERVAL_MS=20.0))
    try:
        async with server.client() as client:
            t0 = time.monotonic()
            read = await read_sse(
                client, "/api/stream/ai-block/ask_question", params={"question": "x", "max_tokens": 500}
            )
            end = terminal_of(read.events)
            assert end["type"] == "error" and end["data"]["code"] == "stream_deadline"
            assert time.monotonic() - t0 < 2
        assert server.provider.cancelled == 1
    finally:
        await server.stop()
