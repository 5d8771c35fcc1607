"""The event envelope shared by SSE and WebSocket, and every event's payload.

These pydantic models are the single source of the stream contract:
``contracts/stream-schema.yaml`` is generated from them (``python -m
quartapp.contract``) and a test fails if the committed file drifts.

On the hot path events are *not* built through these models: the engine knows
the types it emits, so it builds plain dicts and :class:`Entry` serialises each
event once, sharing the bytes among all readers. The tests validate every
event they receive against the generated schema instead.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from .sse import json_frame, json_of_frame


class EventType(enum.StrEnum):
    """The events the core sends for every block; a block adds its own (``Block.events``:
    ``quiz.question``, ``diagram.partial``, a team's ``flashcards.card``)."""

    START = "start"
    QUEUED = "queued"
    TOKEN = "token"
    SNAPSHOT = "snapshot"
    RESET = "reset"
    DONE = "done"
    ERROR = "error"
    SHUTDOWN = "shutdown"


TERMINAL = frozenset({EventType.DONE.value, EventType.ERROR.value})


class Fold(enum.Enum):
    """How an event changes its stream's state, the fold a ``snapshot`` carries.

    Every log folds by this, never by event type: the memory log's state, the Redis log's keys
    (the writer stores what the fold computes) and the manager's first-token clock. A block
    declares the fold of each of its own events (``Block.folds``); an event it does not name
    changes nothing (a late reader's snapshot does not carry it)."""

    NOTHING = "nothing"
    START = "start"  #: the stream's start event, kept for readers that never saw it
    TEXT = "text"  #: ``data["text"]`` appends to the text; it holds ``data["tokens"]`` tokens (default 1)
    QUESTION = "question"  #: ``data["question"]`` appends to the quiz questions
    END = "end"  #: the terminal event: ``data["status"]`` is how the stream ended


#: The core events' folds; a block adds its own events' (``Block.folds``).
CORE_FOLDS: dict[str, Fold] = {EventType.START.value: Fold.START, EventType.TOKEN.value: Fold.TEXT}
CORE_FOLDS |= dict.fromkeys(TERMINAL, Fold.END)
#: The folds a block may give its own events (the others belong to core events).
BLOCK_FOLDS = frozenset({Fold.TEXT, Fold.QUESTION})

#: An event type starting with this is a **private record**: the stream manager keeps it in the
#: log (``put_private``, by type and ``index``) and never sends it to a reader.
PRIVATE_PREFIX = "_"
#: A quiz question's answer and explanation, kept until the learner answers it.
QUIZ_KEY_EVENT = "_quiz.key"

EndStatus = Literal["complete", "stopped", "interrupted", "failed"]
#: A registered block's name (the contract lists the registered ones as an enum).
BlockName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Usage(_Payload):
    input_tokens: int = Field(ge=0, description="Prompt tokens, as the provider counted them")
    output_tokens: int = Field(ge=0, description="Generated tokens")


class QuizItem(_Payload):
    """A quiz question as the learner gets it: the question and its choices. The answer and the
    explanation stay on the server until the learner answers (``POST .../answer``); they are
    here only for a requester that asked for the answer key (``options.answer_key``)."""

    question: str = Field(min_length=1, max_length=300)
    choices: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(min_length=4, max_length=4)
    answer_index: int | None = Field(default=None, ge=0, le=3, description="Only with the answer key")
    explanation: str | None = Field(default=None, min_length=1, max_length=400, description="Only with the answer key")


class QuizQuestion(QuizItem):
    """One whole multiple-choice question; the quiz block validates every one with this model."""

    answer_index: int = Field(ge=0, le=3)
    explanation: str = Field(min_length=1, max_length=400)

    def shown(self) -> QuizItem:
        """What a learner sees of it before answering."""
        return QuizItem(question=self.question, choices=self.choices)


class QuizAnswer(_Payload):
    """``POST /api/streams/<id>/answer``: whether the learner's choice was right, and why."""

    index: int = Field(ge=0, description="The question's index in the stream")
    choice: int = Field(ge=0, le=3, description="The choice the learner picked")
    correct: bool
    answer_index: int = Field(ge=0, le=3)
    explanation: str


class DiagramCheck(_Payload):
    valid: bool = Field(description="The structural check passed")
    errors: list[str] = Field(description="What the check found wrong, empty when valid")


class BlockResult(_Payload):
    """What a block produced: text for ask/ELI10, questions for a quiz, source for a diagram."""

    block_type: BlockName
    text: str = Field(description="Markdown answer, raw quiz JSON, or Mermaid source")
    questions: list[QuizItem] | None = None
    diagram: DiagramCheck | None = None


class StartData(_Payload):
    stream_id: str
    block_type: BlockName
    provider: str = Field(description="local, openai or scripted")
    model: str
    scripted: bool = Field(description="True when the text is scripted test output, not a model's")
    notice: str | None = Field(default=None, description="Human note, e.g. that the provider is scripted")
    input: str | None = Field(default=None, description="The learner's text (a follow-up's: the thread's topic)")
    parent_stream_id: str | None = Field(default=None, description="A follow-up: the stream of the turn it continues")
    follow_up: str | None = Field(
        default=None, description="A follow-up's kind (simpler, another_question, ...); null: the learner's own words"
    )
    shared: bool = Field(
        default=False, description="Present and true when this stream reads a generation shared with other requests"
    )
    cached: bool = Field(
        default=False, description="Present and true when that generation had completed: the stream replays at once"
    )


class QueuedData(_Payload):
    position: int = Field(ge=1, description="1 = next to be served by the model")


class TokenData(_Payload):
    text: str = Field(description="Text to append; several tokens may be coalesced into one event")
    tokens: int = Field(ge=1, description="How many model tokens this text holds")
    t: int | None = Field(
        default=None, description="Server time (ns) the first token was taken from the provider (EVENT_TIMESTAMPS)"
    )


class QuizQuestionData(_Payload):
    index: int = Field(ge=0)
    question: QuizItem


class DiagramPartialData(_Payload):
    text: str = Field(description="Mermaid source to append")


class SnapshotData(_Payload):
    """The whole state so far, replacing what the reader had; sent instead of a long replay."""

    start: StartData | None = Field(description="The stream's start event, for readers that never saw it")
    text: str
    questions: list[QuizItem]
    output_tokens: int = Field(ge=0)


class ResetData(_Payload):
    reason: Literal["epoch_mismatch", "history_trimmed", "unknown_cursor"]
    message: str


class DoneData(_Payload):
    status: EndStatus
    reason: str = Field(description="Why it ended: finished, length, stop_requested, abandoned, ...")
    usage: Usage
    result: BlockResult


class ErrorData(_Payload):
    code: str = Field(description="Stable machine-readable code, e.g. provider_error, stream_deadline")
    message: str
    status: EndStatus
    retryable: bool
    usage: Usage | None = None
    result: BlockResult | None = Field(default=None, description="What was produced before the failure")


class ShutdownData(_Payload):
    message: str
    retry_after_ms: int = Field(ge=0)


PAYLOADS: dict[EventType, type[BaseModel]] = {
    EventType.START: StartData,
    EventType.QUEUED: QueuedData,
    EventType.TOKEN: TokenData,
    EventType.SNAPSHOT: SnapshotData,
    EventType.RESET: ResetData,
    EventType.DONE: DoneData,
    EventType.ERROR: ErrorData,
    EventType.SHUTDOWN: ShutdownData,
}


class Entry:
    """One event in a stream log: id, type and JSON data, each serialised once.

    ``sse`` and ``ws`` are built on first use and cached, so a thousand readers
    of one stream share the same bytes. A log holds thousands of these, so an entry
    keeps one form of its data: the dict until it is encoded, then the bytes only
    (``decoded()`` parses them again for the rare caller that needs the dict).
    """

    __slots__ = ("_json", "_sse", "_ws", "data", "epoch", "seq", "stream_id", "type")

    def __init__(
        self,
        stream_id: str,
        epoch: str,
        seq: int,
        type: str,
        data: dict[str, object] | None,
        json: bytes | None = None,
    ):
        self.stream_id = stream_id
        self.epoch = epoch
        self.seq = seq
        self.type = type
        self.data = None if json is not None else data
        self._json = json
        self._sse: bytes | None = None
        self._ws: str | None = None

    @property
    def id(self) -> str:
        return f"{self.epoch}-{self.seq}"

    def absorb(self, data: dict[str, object], max_tokens: int) -> bool:
        """Merge a later token event into this one while its bytes are not built (the log
        calls it only for an event no read has handed out) and the sum stays within
        ``max_tokens``. The first token's ``t`` stamp stays."""
        mine = self.data
        if self._json is not None or self._sse is not None or mine is None:
            return False
        tokens = mine["tokens"] + data["tokens"]  # type: ignore[operator]
        if tokens > max_tokens:
            return False
        mine["text"] += data["text"]  # type: ignore[operator]
        mine["tokens"] = tokens
        return True

    @property
    def json(self) -> bytes:
        if self._json is None:
            if self._sse is not None:  # the frame holds the JSON: slice it out again
                self._json = json_of_frame(self._sse)
            else:
                self._json = to_json(self.data)
                self.data = None
        return self._json

    @property
    def sse(self) -> bytes:
        """The SSE frame. Compact JSON has no newline, so one ``data:`` line is spec-correct.

        A ``reset`` has no ``id:`` line: EventSource then keeps the reader's cursor, so a
        connection lost before the ``snapshot`` after it resumes into both again."""
        if self._sse is None:
            self._sse = json_frame(self.type, self.json, None if self.type == "reset" else f"{self.epoch}-{self.seq}")
            self._json = None  # kept inside the frame
        return self._sse

    @property
    def ws(self) -> str:
        """The WebSocket text frame: the same envelope plus the stream it belongs to (a ``reset``
        without an id, as over SSE)."""
        if self._ws is None:
            where = "" if self.type == "reset" else f'"id":"{self.epoch}-{self.seq}",'
            self._ws = f'{{"stream_id":"{self.stream_id}",{where}"type":"{self.type}","data":{self.json.decode()}}}'
        return self._ws

    def decoded(self) -> dict[str, object]:
        if self.data is not None:
            return self.data
        from pydantic_core import from_json

        data: dict[str, object] = from_json(self.json)
        return data

    def __repr__(self) -> str:
        return f"Entry({self.id!r}, {self.type!r})"


def parse_event_id(value: str) -> tuple[str, int] | None:
    """Split ``<epoch>-<seq>``; None when it is not one of ours."""
    epoch, sep, seq = value.rpartition("-")
    if not sep or not epoch or not seq.isdigit() or len(value) > 64:
        return None
    return epoch, int(seq)
