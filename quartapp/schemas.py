"""Request and response models of the HTTP and WebSocket surface.

quart-schema validates requests with these and publishes them in
``/openapi.json``; the WebSocket client messages go into the AsyncAPI document.
``extra="forbid"`` everywhere: a client cannot slip in a field (say, a role).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from .streams.events import BlockResult, Usage


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BlockOptions(_Model):
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000, description="Clamped to the server's MAX_TOKENS")
    num_questions: int | None = Field(default=None, ge=1, le=10, description="Quiz only; default 3")
    answer_key: bool = Field(
        default=False,
        description="Quiz only: send each question's answer and explanation with it (a teacher's view; "
        "QUIZ_ANSWER_KEY says who may ask)",
    )


class FollowUpFields(_Model):
    """What makes a start a follow-up: the stream it continues, and what is asked of it."""

    parent_stream_id: str | None = Field(
        default=None, max_length=64, description="Continue this finished stream of yours (a follow-up): its thread"
    )
    follow_up: str | None = Field(
        default=None,
        max_length=64,
        description="The follow-up's kind: simpler, another_example, why (text blocks), another_question (quiz), "
        "more_detail (diagram); null with input: the learner's own follow-up question",
    )


class StartStream(FollowUpFields):
    block_type: str = Field(
        max_length=64, description="A registered block: ask_question, explain_eli10, quiz, diagram, or the app's own"
    )
    input: str = Field(
        default="",
        max_length=100_000,
        description="The question or topic (the server's MAX_INPUT_CHARS applies); a follow-up of a kind may omit it",
    )
    options: BlockOptions = Field(default_factory=BlockOptions)


class BlockBody(_Model):
    input: str = Field(max_length=100_000, description="The question or topic")
    options: BlockOptions = Field(default_factory=BlockOptions)


class AnswerBody(_Model):
    index: int = Field(ge=0, le=99, description="The question's index in the stream (quiz.question's index)")
    choice: int = Field(ge=0, le=3, description="The choice the learner picked, 0-3")


class StreamCreated(_Model):
    stream_id: str
    block_type: str
    status: str
    events_url: str | None = Field(description="SSE endpoint; null when SSE is not mounted")
    status_url: str
    stop_url: str
    websocket_url: str | None = Field(description="WebSocket endpoint; null when not mounted")


class StreamStatus(_Model):
    stream_id: str
    block_type: str
    status: Literal["running", "complete", "stopped", "interrupted", "failed"]
    created_at: float
    ended_at: float | None
    first_event_id: str = Field(description="Oldest event still kept for resume")
    last_event_id: str


class BlockResponse(_Model):
    result: BlockResult | dict[str, Any] = Field(
        description="The block's result: BlockResult for the built-in blocks, a registered block's own model otherwise"
    )
    usage: Usage
    finish_reason: str
    provider: str
    model: str
    scripted: bool


class OneShotQuery(_Model):
    """Query of the one-shot SSE route; give the text as ``input``, ``question`` or ``topic``."""

    input: str | None = Field(default=None, max_length=100_000)
    question: str | None = Field(default=None, max_length=100_000)
    topic: str | None = Field(default=None, max_length=100_000)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    num_questions: int | None = Field(default=None, ge=1, le=10)
    interval_ms: float | None = Field(
        default=None, ge=0, le=10_000, description="Scripted provider only (tests, benchmarks): ms between tokens"
    )


class EventsQuery(_Model):
    after: str | None = Field(default=None, max_length=64, description="Resume after this event id")


class Health(_Model):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(default_factory=dict)


# -- WebSocket messages (client -> server) ---------------------------------


class WsStart(FollowUpFields):
    type: Literal["start"]
    block_type: str = Field(max_length=64)
    input: str = Field(default="", max_length=100_000)
    options: BlockOptions = Field(default_factory=BlockOptions)
    request_id: str | None = Field(default=None, max_length=64, description="Echoed in the accepted/rejected reply")


class WsResume(_Model):
    type: Literal["resume"]
    stream_id: str = Field(max_length=64)
    after: str | None = Field(default=None, max_length=64, description="Last event id seen; null replays all")
    request_id: str | None = Field(default=None, max_length=64)


class WsStop(_Model):
    type: Literal["stop"]
    stream_id: str = Field(max_length=64)
    request_id: str | None = Field(default=None, max_length=64)


class WsClientMessage(RootModel[Annotated[WsStart | WsResume | WsStop, Field(discriminator="type")]]):
    pass


# -- WebSocket replies (server -> client), besides stream events --------------


class WsAccepted(_Model):
    type: Literal["accepted"]
    request_id: str | None
    stream_id: str
    action: Literal["start", "resume", "stop"]
    caught_up: bool = Field(
        default=False,
        description="A resume of an ended stream whose last event the client already has: no event "
        "follows and the client stops reading it (over SSE the same resume is answered 204)",
    )


class WsRejectedDetail(_Model):
    code: str
    message: str
    field: str | None = None


class WsRejected(_Model):
    type: Literal["rejected"]
    request_id: str | None
    stream_id: str | None
    error: WsRejectedDetail
