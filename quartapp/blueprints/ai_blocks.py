"""Block endpoints: the whole result as JSON, or start-and-read in one SSE response."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import validate_response

from quartapp.blueprints.validation import validate_querystring, validate_request
from quartapp.engine import RunFailed
from quartapp.errors import APIError, ErrorBody
from quartapp.schemas import BlockBody, BlockResponse, OneShotQuery
from quartapp.security import starts_generation
from quartapp.state import services
from quartapp.streams.events import parse_event_id
from quartapp.streams.log import StreamInfo
from quartapp.streams.manager import StreamNotFound

from .identity import allow_answer_key, client_address, owner_id
from .sse import cursor_from_request, stream_response

bp = Blueprint("ai_blocks", __name__, url_prefix="/api/ai-block")
sse_bp = Blueprint("ai_blocks_sse", __name__, url_prefix="/api/stream/ai-block")


def require_block(block_type: str) -> None:
    blocks = services().blocks
    if block_type not in blocks:
        raise APIError(
            404, "unknown_block_type", f"unknown block type; expected one of {', '.join(blocks)}", "block_type"
        )


@bp.post("/<block_type>")
@starts_generation
@validate_request(BlockBody)
@validate_response(BlockResponse, 200)
@validate_response(ErrorBody, 422)
async def complete(block_type: str, data: BlockBody) -> BlockResponse:
    """Generate the whole block and return it as one JSON body (works with streaming off)."""
    require_block(block_type)
    core = services()
    options = data.options
    block = core.engine.prepare(
        block_type,
        data.input,
        options.max_tokens,
        options.num_questions,
        answer_key=allow_answer_key(options.answer_key),
    )
    lease = await core.limits.admit(owner_id(), client_address())  # before the model is called
    try:
        done = await core.engine.complete(block)
        lease.tokens = done.usage.input_tokens + done.usage.output_tokens
    except RunFailed as exc:
        lease.tokens = exc.usage.input_tokens + exc.usage.output_tokens if exc.usage else 0
        raise
    finally:
        await core.limits.release(lease)
    info = core.provider.info
    return BlockResponse(
        result=done.result.model_dump(exclude_none=True),  # type: ignore[arg-type]
        usage={"input_tokens": done.usage.input_tokens, "output_tokens": done.usage.output_tokens},  # type: ignore[arg-type]
        finish_reason=done.finish_reason,
        provider=info.name,
        model=info.model,
        scripted=info.scripted,
    )


@sse_bp.get("/<block_type>")
@starts_generation
@validate_querystring(OneShotQuery)
async def one_shot(block_type: str, query_args: OneShotQuery) -> Response:
    """Start a block and stream it in this response: the simplest EventSource client.

    A reconnect carries ``Last-Event-ID``; its epoch names the stream, so the
    browser resumes the same answer instead of starting a new one.
    """
    require_block(block_type)
    core = services()
    owner = owner_id()
    cursor = cursor_from_request(None)
    if cursor:
        parsed = parse_event_id(cursor)
        stream_id = await core.streams.log.find_by_epoch(parsed[0]) if parsed else None
        try:
            if stream_id is None:
                raise StreamNotFound(cursor)
            info = await core.streams.info(stream_id, owner)
        except StreamNotFound:
            # gone, or someone else's: the same answer, so the two cannot be told apart
            raise APIError(
                404, "stream_not_found", "the stream this cursor belongs to is gone", "Last-Event-ID"
            ) from None
        return stream_response(info, cursor, owner)
    info = await start_one_shot(block_type, query_args, owner)
    return stream_response(info, None, owner)


async def start_one_shot(block_type: str, query: OneShotQuery, owner: str) -> StreamInfo:
    """Start the block a one-shot query asks for (the SSE route's and the socket's)."""
    require_block(block_type)
    texts = [t for t in (query.input, query.question, query.topic) if t is not None]
    if len(texts) != 1:
        raise APIError(422, "input_required", "give the text as exactly one of input, question or topic", "input")
    core = services()
    block = core.engine.prepare(block_type, texts[0], query.max_tokens, query.num_questions, query.interval_ms)
    return await core.streams.start(block, owner, client_address())
