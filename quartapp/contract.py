"""Generate ``contracts/stream-schema.yaml``, the AsyncAPI 3.0 document of the streams, and
``contracts/ai-sdk-stream.yaml``, the document of the Vercel AI SDK's chat surface.

The document is built from the pydantic models the server uses
(``streams/events.py``, ``schemas.py``) and from the block registry (each block's
events and result model; the block-name enums), so it cannot drift from the code:
``python -m quartapp.contract`` rewrites it, and a test fails when the
committed file differs from what this module generates.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .config import ROOT
from .engine.blocks import BlockRegistry
from .schemas import BlockOptions, WsAccepted, WsRejected, WsResume, WsStart, WsStop
from .streams.events import PAYLOADS, BlockResult, EventType

PATH = ROOT / "contracts" / "stream-schema.yaml"
AI_SDK_PATH = ROOT / "contracts" / "ai-sdk-stream.yaml"
REF = "#/components/schemas/{model}"
EVENT_ID_PATTERN = r"^[0-9a-f]+-[0-9]+$"

RESUME_RULES = """\
Every stream event has an id `<epoch>-<seq>`: `seq` counts from 1 within the stream, `epoch` names one
incarnation of the stream's log. To resume, send the last id you processed: as `Last-Event-ID` (EventSource
does this by itself) or `?after=` on SSE, or `after` in a WebSocket `resume` message. The server then sends
exactly the events after it, with no gap and no duplicate. If your cursor is from another epoch, older than the
retained history, or not an id of this stream, you get a `reset` and then a `snapshot`; if you are more than
STREAM_SNAPSHOT_AFTER events behind (or join a long stream with no cursor) you get one `snapshot` instead of the
replay. A `reset` carries no id (it names no position: over SSE it has no `id:` line, so EventSource keeps your
cursor, and a connection lost before the `snapshot` arrives resumes into the same `reset` and `snapshot`). A
`snapshot` carries the id of the last event it covers and replaces the state you had; apply it even when you
have seen its id. A stream ends with exactly one `done` or `error`, each with the status
(`complete`, `stopped`, `interrupted`, `failed`) and the result produced so far. After it the SSE response ends;
resuming from the terminal event's id answers 204 (EventSource stops reconnecting). SSE sends `retry:` first and a
`: hb` comment on quiet streams (HEARTBEAT_INTERVAL_S).
"""


def event_payloads(blocks: BlockRegistry) -> dict[str, type[BaseModel]]:
    """Every event type a stream of these blocks may carry, with its payload model."""
    payloads: dict[str, type[BaseModel]] = {event.value: model for event, model in PAYLOADS.items()}
    for block in blocks.values():
        payloads.update(block.events)
    return payloads


def _results(blocks: BlockRegistry) -> list[type[BaseModel]]:
    return list(dict.fromkeys(block.result_model or BlockResult for block in blocks.values()))


def _schemas(blocks: BlockRegistry) -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        *event_payloads(blocks).values(),
        *_results(blocks),
        BlockOptions,
        WsStart,
        WsResume,
        WsStop,
        WsAccepted,
        WsRejected,
    ]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas: dict[str, Any] = dict(sorted(top.get("$defs", {}).items()))
    names = {"type": "string", "enum": list(blocks.names)}
    for name in ("StartData", "BlockResult"):
        if "block_type" in schemas.get(name, {}).get("properties", {}):
            schemas[name]["properties"]["block_type"] = names
    results = [{"$ref": REF.format(model=m.__name__)} for m in _results(blocks)]
    if len(results) > 1:  # a registered block with a result model of its own
        schemas["DoneData"]["properties"]["result"] = {"oneOf": results}
        schemas["ErrorData"]["properties"]["result"] = {"anyOf": [*results, {"type": "null"}], "default": None}
    return schemas


def _envelope(event: str, payload: str) -> dict[str, Any]:
    # a reset names no position in the stream: no id (see RESUME_RULES)
    return {
        "type": "object",
        "required": ["type", "data"] if event == EventType.RESET else ["id", "type", "data"],
        "additionalProperties": False,
        "properties": {
            "stream_id": {"type": "string", "description": "WebSocket frames only: the stream the event belongs to"},
            "id": {"type": "string", "pattern": EVENT_ID_PATTERN},
            "type": {"const": event},
            "data": {"$ref": REF.format(model=payload)},
        },
    }


def build(blocks: BlockRegistry | None = None, url_prefix: str = "") -> dict[str, Any]:
    """The document for ``blocks`` (default: the four built-in ones, the committed file), its
    channel addresses under ``url_prefix`` (where the extension is mounted)."""
    if blocks is None:
        from .blocks import builtin_registry

        blocks = builtin_registry()
    schemas = _schemas(blocks)
    messages: dict[str, Any] = {}
    for event, model in event_payloads(blocks).items():
        key = "event_" + event.replace(".", "_")
        messages[key] = {
            "name": event,
            "title": f"{event} event",
            "summary": (model.__doc__ or "").strip().split("\n")[0] or None,
            "payload": _envelope(event, model.__name__),
        }
    for model in (WsStart, WsResume, WsStop, WsAccepted, WsRejected):
        messages["ws_" + model.__name__] = {
            "name": model.__name__,
            "payload": {"$ref": REF.format(model=model.__name__)},
        }
    event_refs = {k: {"$ref": f"#/components/messages/{k}"} for k in messages if k.startswith("event_")}
    client_refs = {k: {"$ref": f"#/components/messages/{k}"} for k in ("ws_WsStart", "ws_WsResume", "ws_WsStop")}
    reply_refs = {k: {"$ref": f"#/components/messages/{k}"} for k in ("ws_WsAccepted", "ws_WsRejected")}
    stream_param = {"streamId": {"description": "The id returned by POST /api/streams (128 random bits)"}}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Live AI interaction layer: stream events",
            "version": "1.0.0",
            "description": " ".join(RESUME_RULES.split()),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:8000", "protocol": "http", "description": "SSE over HTTP/1.1 or h2c"},
            "local-ws": {"host": "127.0.0.1:8000", "protocol": "ws"},
        },
        "channels": {
            "streamEvents": {
                "address": url_prefix + "/api/streams/{streamId}/events",
                "description": "SSE: `id:` is the event id, `event:` its type, `data:` its data (one line of JSON).",
                "parameters": stream_param,
                "messages": event_refs,
                "servers": [{"$ref": "#/servers/local"}],
            },
            "oneShotBlock": {
                "address": url_prefix + "/api/stream/ai-block/{blockType}",
                "description": "SSE: starts a block from the query (input, question or topic) and streams it.",
                "parameters": {"blockType": {"enum": list(blocks.names)}},
                "messages": event_refs,
                "servers": [{"$ref": "#/servers/local"}],
            },
            "oneShotSocket": {
                "address": url_prefix + "/ws/stream/ai-block/{blockType}",
                "description": "WebSocket: starts a block from the query (as oneShotBlock), sends its events as JSON "
                "text frames (with `stream_id`), then closes 1000; 1013 for a reader that stopped reading.",
                "parameters": {"blockType": {"enum": list(blocks.names)}},
                "messages": event_refs,
                "servers": [{"$ref": "#/servers/local-ws"}],
            },
            "streamSocket": {
                "address": url_prefix + "/ws/streams",
                "description": "WebSocket: JSON text frames. Events carry `stream_id` besides the SSE envelope.",
                "messages": {**event_refs, **client_refs, **reply_refs},
                "servers": [{"$ref": "#/servers/local-ws"}],
            },
        },
        "operations": {
            "readStreamEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/streamEvents"},
                "messages": [{"$ref": f"#/channels/streamEvents/messages/{k}"} for k in event_refs],
            },
            "readOneShotBlock": {
                "action": "receive",
                "channel": {"$ref": "#/channels/oneShotBlock"},
                "messages": [{"$ref": f"#/channels/oneShotBlock/messages/{k}"} for k in event_refs],
            },
            "readOneShotSocket": {
                "action": "receive",
                "channel": {"$ref": "#/channels/oneShotSocket"},
                "messages": [{"$ref": f"#/channels/oneShotSocket/messages/{k}"} for k in event_refs],
            },
            "sendSocketMessage": {
                "action": "send",
                "channel": {"$ref": "#/channels/streamSocket"},
                "messages": [{"$ref": f"#/channels/streamSocket/messages/{k}"} for k in client_refs],
            },
            "receiveSocketMessage": {
                "action": "receive",
                "channel": {"$ref": "#/channels/streamSocket"},
                "messages": [{"$ref": f"#/channels/streamSocket/messages/{k}"} for k in {**event_refs, **reply_refs}],
            },
        },
        "components": {"messages": messages, "schemas": schemas},
    }


def build_ai_sdk(blocks: BlockRegistry | None = None, url_prefix: str = "") -> dict[str, Any]:
    """The AI SDK surface (``blueprints/ai_sdk.py``): the UI message stream's parts we send."""
    from .schemas import BlockOptions
    from .streams.ui_message_stream import PART_MODELS

    if blocks is None:
        from .blocks import builtin_registry

        blocks = builtin_registry()
    _, top = models_json_schema([(m, "validation") for m in PART_MODELS], ref_template=REF)
    schemas: dict[str, Any] = dict(sorted(top.get("$defs", {}).items()))
    messages = {
        "part_" + model.__name__: {
            "name": model.model_fields["type"].annotation.__args__[0],  # type: ignore[union-attr]
            "summary": (model.__doc__ or "").strip().split("\n")[0] or None,
            "payload": {"$ref": REF.format(model=model.__name__)},
        }
        for model in PART_MODELS
    }
    refs = {k: {"$ref": f"#/components/messages/{k}"} for k in messages}
    block_param = {"blockType": {"enum": list(blocks.names)}}  # copied per channel: no YAML anchors
    description = (
        "The Vercel AI SDK's UI message stream protocol v1 (header `x-vercel-ai-ui-message-stream: v1`): "
        "SSE frames `data: <one part as JSON>`, then `data: [DONE]`. The chat POST takes the SDK's body "
        "`{id, messages, trigger}` (the last user message's text parts are the input) and our "
        f"`options` ({', '.join(BlockOptions.model_fields)}). The resume GET answers 204 when the chat has "
        "no running stream, else the text so far as one `text-delta` (less `?text_chars=` the client holds, "
        "and quiz questions less `?questions=`) and then the live tail."
    )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Live AI interaction layer: the AI SDK chat stream",
            "version": "1.0.0",
            "description": description,
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:8000", "protocol": "http"}},
        "channels": {
            "aiSdkChat": {
                "address": url_prefix + "/api/ai-sdk/{blockType}/chat",
                "description": "POST: start the block for the chat and stream its answer "
                "(`.../completion` with `{prompt}` streams the same parts, for useCompletion).",
                "parameters": {**block_param},
                "messages": {k: dict(v) for k, v in refs.items()},
                "servers": [{"$ref": "#/servers/local"}],
            },
            "aiSdkResume": {
                "address": url_prefix + "/api/ai-sdk/{blockType}/chat/{chatId}/stream",
                "description": "GET: the SDK's resume of the chat's running stream (204 when none).",
                "parameters": {"blockType": {"enum": list(blocks.names)}, "chatId": {"description": "The chat's `id`"}},
                "messages": {k: dict(v) for k, v in refs.items()},
                "servers": [{"$ref": "#/servers/local"}],
            },
        },
        "operations": {
            name: {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{k}"} for k in refs],
            }
            for name, channel in (("readAiSdkChat", "aiSdkChat"), ("readAiSdkResume", "aiSdkResume"))
        },
        "components": {"messages": messages, "schemas": schemas},
    }


_HEADER = "# Generated by `python -m quartapp.contract` from the server's pydantic models. Do not edit.\n"


def render(blocks: BlockRegistry | None = None) -> str:
    return _HEADER + yaml.safe_dump(build(blocks), sort_keys=False, allow_unicode=True, width=100)


def render_ai_sdk(blocks: BlockRegistry | None = None) -> str:
    return _HEADER + yaml.safe_dump(build_ai_sdk(blocks), sort_keys=False, allow_unicode=True, width=100)


def main() -> None:
    documents = {PATH: render(), AI_SDK_PATH: render_ai_sdk()}
    for path, text in documents.items():
        if "--check" in sys.argv:
            if not path.is_file() or path.read_text() != text:
                sys.exit(f"{path} is out of date: run python -m quartapp.contract")
            continue
        Path(path).write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
