"""The Vercel AI SDK's chat protocol over our streams: ``useChat`` pointed at a block.

``POST /api/ai-sdk/<block_type>/chat`` takes the SDK's chat body (``{id, messages, trigger,
messageId}``), starts the block with the last user message as its input, and answers in the
UI message stream protocol (``streams/ui_message_stream.py``). ``GET
/api/ai-sdk/<block_type>/chat/<chat_id>/stream`` is the SDK's resume: 204 when the chat has no
running stream, else the text so far as one catch-up and then the live tail, so a reloaded page
holds the answer once; a client that kept part of the message says how much
(``?text_chars=&questions=``) and gets only the rest. ``POST /api/ai-sdk/<block_type>/completion``
serves ``useCompletion`` (``{prompt}``) in the same protocol. Ownership, origin checks, limits and the
error shape are those of every route under the extension's blueprint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response

from quartapp.blueprints.validation import validate_querystring, validate_request
from quartapp.errors import APIError
from quartapp.schemas import BlockOptions
from quartapp.security import starts_generation
from quartapp.state import Services, services
from quartapp.streams.sse import HEARTBEAT
from quartapp.streams.ui_message_stream import DONE, HEADERS, UIMessageEncoder

from .ai_blocks import require_block
from .identity import client_address, owner_id

bp = Blueprint("ai_sdk", __name__, url_prefix="/api/ai-sdk")


class ChatMessage(BaseModel):
    """A UI message as the SDK sends it; only user text parts are read."""

    model_config = ConfigDict(extra="allow")
    role: str = Field(max_length=32)
    parts: list[dict[str, object]] = Field(default_factory=list, max_length=100)


class ChatRequest(BaseModel):
    """The body ``DefaultChatTransport`` posts."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=128, description="The chat's id (the resume route's key)")
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    trigger: str | None = Field(default=None, max_length=64)
    options: BlockOptions = Field(default_factory=BlockOptions, description="The transport's `body`: our options")


class CompletionRequest(BaseModel):
    """The body ``useCompletion`` posts: the prompt, and the hook's ``body`` (our options)."""

    model_config = ConfigDict(extra="allow")
    prompt: str = Field(max_length=100_000)
    options: BlockOptions = Field(default_factory=BlockOptions)


class ResumeQuery(BaseModel):
    """What the client already holds of the message, so the resume sends only the rest (a
    client that holds nothing, as after a reload, gets the text so far as one delta)."""

    model_config = ConfigDict(extra="forbid")
    text_chars: int = Field(default=0, ge=0, le=10_000_000, description="Characters of the answer's text it has")
    questions: int = Field(default=0, ge=0, le=100, description="Quiz questions it has")


def _user_text(data: ChatRequest) -> str:
    for message in reversed(data.messages):
        if message.role == "user":
            texts = [str(p.get("text", "")) for p in message.parts if p.get("type") == "text"]
            return "\n".join(texts)
    raise APIError(422, "input_required", "the chat has no user message to answer", "messages")


async def _body(
    core: Services, block_type: str, stream_id: str, owner: str, held: ResumeQuery | None
) -> AsyncIterator[bytes]:
    folds = core.blocks[block_type].event_folds
    encoder = UIMessageEncoder(stream_id, folds, held.text_chars if held else 0, held.questions if held else 0)
    async for batch in core.streams.follow(stream_id, None, owner, snapshot_first=held is not None):
        if not batch:
            yield HEARTBEAT
        else:
            yield b"".join(encoder.encode(entry) for entry in batch)
    yield DONE


def _response(core: Services, block_type: str, stream_id: str, owner: str, held: ResumeQuery | None) -> Response:
    response = Response(_body(core, block_type, stream_id, owner, held), headers=HEADERS)
    settings = core.settings
    response.timeout = settings.STREAM_DEADLINE_S + settings.STREAM_RETENTION_S + 60
    return response


@bp.post("/<block_type>/chat")
@starts_generation
@validate_request(ChatRequest)
async def chat(block_type: str, data: ChatRequest) -> Response:
    """Start the block for the chat's last user message; the answer streams in this response."""
    require_block(block_type)
    core = services()
    owner = owner_id()
    options = data.options
    request = core.engine.prepare(block_type, _user_text(data), options.max_tokens, options.num_questions)
    info = await core.streams.start(request, owner, client_address())
    await core.streams.log.set_alias(owner, data.id, info.stream_id)  # the resume route's key, on any instance
    return _response(core, block_type, info.stream_id, owner, None)


@bp.post("/<block_type>/completion")
@starts_generation
@validate_request(CompletionRequest)
async def completion(block_type: str, data: CompletionRequest) -> Response:
    """``useCompletion``: the block for the prompt, streamed in the same protocol (no resume: the
    hook has none)."""
    require_block(block_type)
    core = services()
    owner = owner_id()
    options = data.options
    request = core.engine.prepare(block_type, data.prompt, options.max_tokens, options.num_questions)
    info = await core.streams.start(request, owner, client_address())
    return _response(core, block_type, info.stream_id, owner, None)


@bp.get("/<block_type>/chat/<chat_id>/stream")
@validate_querystring(ResumeQuery)
async def resume(block_type: str, chat_id: str, query_args: ResumeQuery) -> Response:
    """The SDK's resume: 204 unless the chat's stream is still running; else what the client
    does not hold yet (``text_chars``, ``questions``), then the live tail."""
    require_block(block_type)
    core = services()
    owner = owner_id()
    stream_id = await core.streams.log.find_alias(owner, chat_id)
    info = await core.streams.log.info(stream_id) if stream_id else None
    if stream_id is None or info is None or info.owner != owner or info.status != "running":
        return Response(b"", status=204)
    return _response(core, info.block_type, stream_id, owner, query_args)
