"""The AI SDK chat surface on the wire, on a real Hypercorn (the SDK's own client reads it in
``frontend/e2e/ai-sdk.spec.ts``): the protocol's header, parts and end, and our guarantees."""

from __future__ import annotations

import json
from typing import Any

import httpx2
from pydantic import TypeAdapter

from quartapp.streams.ui_message_stream import UIPart

#: Every part the server writes is one the contract (contracts/ai-sdk-stream.yaml) describes.
PART = TypeAdapter(UIPart)

CHAT = "/api/ai-sdk/ask_question/chat"


def body(chat_id: str, text: str = "Why is the sky blue?", **options: Any) -> dict[str, Any]:
    return {
        "id": chat_id,
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}],
        "trigger": "submit-message",
        "messageId": None,
        "options": options,
    }


async def parts(response: httpx2.Response) -> list[Any]:
    """Every ``data:`` of the response, JSON-decoded except the closing ``[DONE]``."""
    out: list[Any] = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            data = line[6:]
            if data != "[DONE]":
                PART.validate_python(json.loads(data))
            out.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert line == "" or line.startswith(":"), line  # frames and heartbeats only
    return out


async def test_a_chat_is_answered_in_the_ui_message_stream_protocol(client: httpx2.AsyncClient) -> None:
    async with client.stream("POST", CHAT, json=body("wire-1", max_tokens=12)) as response:
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert response.headers["content-type"].startswith("text/event-stream")
        got = await parts(response)
    assert got[-1] == "[DONE]"
    kinds = [p["type"] for p in got[:-1]]
    assert kinds[:2] == ["start", "text-start"] and kinds[-2:] == ["text-end", "finish"], kinds
    assert set(kinds[2:-2]) == {"text-delta"} and len(kinds) - 4 == 12  # one delta per token
    stream_id = got[0]["messageId"]
    assert got[0]["messageMetadata"]["stream_id"] == stream_id
    text = "".join(p["delta"] for p in got[:-1] if p["type"] == "text-delta")
    finish = got[-2]
    assert finish["finishReason"] == "length" and finish["messageMetadata"]["usage"]["output_tokens"] == 12
    whole = await client.post(
        "/api/ai-block/ask_question", json={"input": "Why is the sky blue?", "options": {"max_tokens": 12}}
    )
    assert text == whole.json()["result"]["text"]


async def test_stopping_through_our_stop_route_ends_the_message_with_abort(client: httpx2.AsyncClient) -> None:
    async with client.stream("POST", CHAT, json=body("wire-stop", max_tokens=400)) as response:
        got: list[Any] = []
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            got.append(line[6:] if line[6:] == "[DONE]" else PART.validate_python(json.loads(line[6:])).model_dump())
            if len(got) == 4:  # start, text-start and two deltas in: the user presses stop
                stopped = await client.post(f"/api/streams/{got[0]['messageId']}/stop")
                assert stopped.status_code == 200
    assert [p["type"] for p in got[-3:-1]] == ["message-metadata", "abort"] and got[-1] == "[DONE]"
    assert got[-3]["messageMetadata"]["status"] == "stopped"


async def test_the_resume_route_is_the_chats_own(server: Any, client: httpx2.AsyncClient) -> None:
    async with client.stream("POST", CHAT, json=body("wire-owned", max_tokens=200)) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # cut: the stream goes on
    other = server.client(headers={})  # another client, no key: another owner
    async with other:
        assert (await other.get(f"{CHAT}/wire-owned/stream")).status_code == 204
    async with client.stream("GET", f"{CHAT}/wire-owned/stream") as resumed:
        assert resumed.status_code == 200
        got = await parts(resumed)
    text_parts = [p for p in got[:-1] if p["type"] == "text-delta"]
    assert text_parts and got[-1] == "[DONE]"
    bad = await client.get(f"{CHAT}/wire-owned/stream", params={"text_chars": "-1"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "text_chars"


async def test_a_cross_site_chat_is_refused_before_any_model_call(server: Any) -> None:
    browser = server.client(headers={"Origin": "https://evil.example"})
    async with browser:
        response = await browser.post(CHAT, json=body("wire-evil"))
    assert response.status_code == 403 and response.json()["error"]["code"]


async def test_every_block_streams_parts_the_contract_describes(client: httpx2.AsyncClient) -> None:
    """Quiz and diagram too: questions as data parts with stable ids, the result as a data part."""
    for block, result_part in (("quiz", "data-quiz"), ("diagram", "data-diagram"), ("explain_eli10", None)):
        async with client.stream("POST", f"/api/ai-sdk/{block}/chat", json=body(f"wire-{block}")) as response:
            assert response.status_code == 200, block
            got = await parts(response)  # each validated against the contract's models
        kinds = [p["type"] for p in got[:-1]]
        assert kinds[0] == "start" and kinds[-1] == "finish" and got[-1] == "[DONE]", (block, kinds)
        if result_part:
            assert result_part in kinds, (block, kinds)
        if block == "quiz":
            ids = [p["id"] for p in got[:-1] if p["type"] == "data-quiz-question"]
            assert len(ids) == 3 and len(set(ids)) == 3
