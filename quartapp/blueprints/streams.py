"""Streams as resources: start one, read it (SSE), ask its status, stop it."""

from __future__ import annotations

import json

from quart import Blueprint, url_for
from quart_schema import validate_response

from quartapp.blueprints.validation import validate_querystring, validate_request
from quartapp.engine import BlockRequest
from quartapp.engine.blocks import Turn
from quartapp.errors import APIError, ErrorBody
from quartapp.schemas import AnswerBody, EventsQuery, StartStream, StreamCreated, StreamStatus, WsStart
from quartapp.security import cross_site_checked, starts_generation
from quartapp.state import services
from quartapp.streams.events import QUIZ_KEY_EVENT, QuizAnswer
from quartapp.streams.log import StreamInfo

from .identity import allow_answer_key, client_address, owner_id
from .sse import cursor_from_request, stream_response

bp = Blueprint("streams", __name__, url_prefix="/api/streams")
sse_bp = Blueprint("streams_sse", __name__, url_prefix="/api/streams")


def created(info: StreamInfo) -> StreamCreated:
    core = services()
    settings = core.settings
    return StreamCreated(
        stream_id=info.stream_id,
        block_type=info.block_type,
        status=info.status,
        events_url=url_for("ai.streams_sse.events", stream_id=info.stream_id) if settings.sse_enabled else None,
        status_url=url_for("ai.streams.status", stream_id=info.stream_id),
        stop_url=url_for("ai.streams.stop", stream_id=info.stream_id),
        websocket_url=core.url_prefix + "/ws/streams" if settings.websocket_enabled else None,
    )


def status_of(info: StreamInfo) -> StreamStatus:
    return StreamStatus(
        stream_id=info.stream_id,
        block_type=info.block_type,
        status=info.status,  # type: ignore[arg-type]
        created_at=info.created_at,
        ended_at=info.ended_at,
        first_event_id=f"{info.epoch}-{info.first_seq}",
        last_event_id=f"{info.epoch}-{info.last_seq}",
    )


@bp.post("")
@starts_generation
@validate_request(StartStream)
@validate_response(StreamCreated, 201)
@validate_response(ErrorBody, 422)
async def start(data: StartStream) -> tuple[StreamCreated, int]:
    """Start generating a block; read it from ``events_url`` (SSE) or the WebSocket."""
    block = await prepare_start(data, owner_id())
    info = await services().streams.start(block, owner_id(), client_address())
    return created(info), 201


async def prepare_start(data: StartStream | WsStart, owner: str) -> BlockRequest:
    """The block request a start asks for (the HTTP route's and the socket's): a follow-up
    carries its thread's earlier turns. Raises the API's 4xx errors."""
    core = services()
    history: tuple[Turn, ...] = ()
    if data.parent_stream_id is not None:
        history = await core.streams.thread(data.parent_stream_id, owner, data.block_type)
    return core.engine.prepare(
        data.block_type,
        data.input,
        data.options.max_tokens,
        data.options.num_questions,
        parent_stream_id=data.parent_stream_id,
        follow_up=data.follow_up,
        history=history,
        answer_key=allow_answer_key(data.options.answer_key),
    )


@bp.get("/<stream_id>")
@validate_response(StreamStatus, 200)
@validate_response(ErrorBody, 404)
async def status(stream_id: str) -> StreamStatus:
    """How the stream stands: running, or how it ended."""
    return status_of(await services().streams.info(stream_id, owner_id()))


@bp.post("/<stream_id>/stop")
@cross_site_checked
@validate_response(StreamStatus, 200)
@validate_response(ErrorBody, 404)
async def stop(stream_id: str) -> StreamStatus:
    """End generation now. The text so far is kept; the stream ends with ``done`` status ``stopped``."""
    return status_of(await services().streams.stop(stream_id, owner_id()))


@sse_bp.get("/<stream_id>/events")
@validate_querystring(EventsQuery)
async def events(stream_id: str, query_args: EventsQuery):  # type: ignore[no-untyped-def]
    """The stream as Server-Sent Events; resumes after ``Last-Event-ID`` or ``?after=``."""
    owner = owner_id()
    info = await services().streams.info(stream_id, owner)
    return stream_response(info, cursor_from_request(query_args.after), owner)


@bp.post("/<stream_id>/answer")
@cross_site_checked
@validate_request(AnswerBody)
@validate_response(QuizAnswer, 200)
@validate_response(ErrorBody, 404)
@validate_response(ErrorBody, 409)
async def answer(stream_id: str, data: AnswerBody) -> QuizAnswer:
    """Answer one quiz question: whether the choice was right, the answer and the explanation.
    Once per question: the answer key stays on the server until then."""
    streams, owner = services().streams, owner_id()
    record = await streams.private_record(stream_id, owner, f"{QUIZ_KEY_EVENT}:{data.index}")
    if record is None:
        raise APIError(404, "question_not_found", "this stream has no such quiz question (yet)", "index")
    if not await streams.claim(stream_id, owner, f"answered:{data.index}", str(data.choice)):
        raise APIError(409, "already_answered", "this question was answered already", "index")
    key = json.loads(record)
    return QuizAnswer(
        index=data.index,
        choice=data.choice,
        correct=data.choice == key["answer_index"],
        answer_index=key["answer_index"],
        explanation=key["explanation"],
    )
