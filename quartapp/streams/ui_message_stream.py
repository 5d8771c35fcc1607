"""Our stream events as the Vercel AI SDK's UI message stream (protocol ``v1``).

``useChat`` / ``useCompletion`` (``@ai-sdk/react``, ``ai`` 5 and 6) read SSE frames whose data
is one JSON *part* each (``start``, ``text-start`` / ``text-delta`` / ``text-end``, ``data-*``,
``finish``, ``abort``, ``error``), then ``data: [DONE]``, with the response header
``x-vercel-ai-ui-message-stream: v1``. This module only translates: the stream, its log, its
resume and its stop are ours. One encoder per response, since a text part is opened once:

- ``start`` -> ``start`` with ``messageId`` (the stream id) and ``messageMetadata`` naming the
  stream, so a client can stop it (``POST /api/streams/<id>/stop``);
- ``token`` and ``diagram.partial`` -> ``text-delta`` (a ``text-start`` before the first);
- ``quiz.question`` -> ``data-quiz-question`` with a stable id, so the SDK updates it in place;
- ``queued`` and ``shutdown`` -> transient ``data-queued`` / ``data-shutdown`` parts;
- ``snapshot`` (a resume) -> the text so far as **one** delta and the questions so far, less
  what the client says it holds, so a resumed message holds the text once;
- ``done`` -> ``text-end``, the result as ``data-quiz`` / ``data-diagram``, then ``finish`` with
  the usage in ``messageMetadata`` (``abort`` when the stream was stopped or interrupted);
- ``error`` -> ``error`` with ``<code>: <message>``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from .events import BlockResult, EndStatus, Entry, Fold, QueuedData, QuizItem, ShutdownData, Usage
from .sse import SSE_HEADERS

HEADERS = {**SSE_HEADERS, "x-vercel-ai-ui-message-stream": "v1"}
DONE = b"data: [DONE]\n\n"


def part(chunk: dict[str, Any]) -> bytes:
    """One part as its SSE frame (compact JSON: one ``data:`` line)."""
    return b"data: %s\n\n" % to_json(chunk)


class UIMessageEncoder:
    """Translate one stream's entries, in order, for one response."""

    def __init__(self, stream_id: str, folds: dict[str, Fold], held_chars: int = 0, held_questions: int = 0) -> None:
        """``folds``: the block's (``Block.event_folds``): an event that adds text is a text delta,
        one that adds a question a question part. ``held_*``: what a resuming client already has of
        the message; a snapshot skips it."""
        self.stream_id = stream_id
        self.folds = folds
        self.held_chars, self.held_questions = held_chars, held_questions
        self.text_id = f"text-{stream_id}"
        self.started = False
        self.text_open = False

    def encode(self, entry: Entry) -> bytes:
        kind, data = entry.type, entry.decoded()
        fold = self.folds.get(kind)
        if fold is Fold.TEXT:
            return self._text(str(data["text"]))
        if kind == "start":
            return self._start(data)
        if fold is Fold.QUESTION:
            return self._question(data["index"], data["question"])
        if kind == "snapshot":
            return self._snapshot(data)
        if kind == "queued" or kind == "shutdown":
            return part({"type": f"data-{kind}", "data": data, "transient": True})
        if kind == "done":
            return self._done(data)
        if kind == "error":
            return self._close_text() + part({"type": "error", "errorText": f"{data['code']}: {data['message']}"})
        return b""  # reset: the snapshot after it carries the state; a block's own events have no part

    def _start(self, data: Any) -> bytes:
        if self.started:
            return b""
        self.started = True
        metadata = {key: data.get(key) for key in ("stream_id", "block_type", "provider", "model", "scripted")}
        return part({"type": "start", "messageId": self.stream_id, "messageMetadata": metadata})

    def _text(self, text: str) -> bytes:
        opening = b""
        if not self.text_open:
            self.text_open = True
            opening = part({"type": "text-start", "id": self.text_id})
        return opening + part({"type": "text-delta", "id": self.text_id, "delta": text})

    def _close_text(self) -> bytes:
        if not self.text_open:
            return b""
        self.text_open = False
        return part({"type": "text-end", "id": self.text_id})

    def _question(self, index: object, question: object) -> bytes:
        return part({"type": "data-quiz-question", "id": f"{self.stream_id}-q{index}", "data": question})

    def _snapshot(self, data: Any) -> bytes:
        out = self._start(data["start"]) if data.get("start") else b""
        text = data["text"][self.held_chars :]
        if text:
            out += self._text(text)
        for index, question in enumerate(data["questions"]):
            if index >= self.held_questions:
                out += self._question(index, question)
        return out

    def _done(self, data: Any) -> bytes:
        out = self._close_text()
        result = data.get("result") or {}
        if result.get("questions") is not None:
            out += part({"type": "data-quiz", "id": f"{self.stream_id}-quiz", "data": result})
        if result.get("diagram") is not None:
            out += part({"type": "data-diagram", "id": f"{self.stream_id}-diagram", "data": result})
        metadata = {"usage": data.get("usage"), "status": data["status"], "reason": data.get("reason")}
        if data["status"] != "complete":
            return out + part({"type": "message-metadata", "messageMetadata": metadata}) + part({"type": "abort"})
        reason = "length" if data.get("reason") == "length" else "stop"
        return out + part({"type": "finish", "finishReason": reason, "messageMetadata": metadata})


# -- the parts, as models: the contract (contracts/ai-sdk-stream.yaml) is generated from these,
# and the tests validate what the encoder writes against them (the encoder itself builds dicts).


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartMetadata(_Part):
    stream_id: str = Field(description="Our stream: stop it with POST /api/streams/{stream_id}/stop")
    block_type: str
    provider: str
    model: str
    scripted: bool


class EndMetadata(_Part):
    usage: Usage | None
    status: EndStatus
    reason: str | None


class StartPart(_Part):
    type: Literal["start"]
    messageId: str = Field(description="The stream id")
    messageMetadata: StartMetadata


class TextStartPart(_Part):
    type: Literal["text-start"]
    id: str


class TextDeltaPart(_Part):
    """Text to append: a token, or on a resume the text so far (less what the client holds)."""

    type: Literal["text-delta"]
    id: str
    delta: str


class TextEndPart(_Part):
    type: Literal["text-end"]
    id: str


class QuizQuestionPart(_Part):
    """One finished quiz question; its id is stable, so the SDK reconciles it in place."""

    type: Literal["data-quiz-question"]
    id: str
    data: QuizItem


class QuizPart(_Part):
    type: Literal["data-quiz"]
    id: str
    data: BlockResult


class DiagramPart(_Part):
    type: Literal["data-diagram"]
    id: str
    data: BlockResult


class QueuedPart(_Part):
    type: Literal["data-queued"]
    data: QueuedData
    transient: Literal[True]


class ShutdownPart(_Part):
    type: Literal["data-shutdown"]
    data: ShutdownData
    transient: Literal[True]


class FinishPart(_Part):
    type: Literal["finish"]
    finishReason: Literal["stop", "length"]
    messageMetadata: EndMetadata


class MessageMetadataPart(_Part):
    """Sent before ``abort``: how the stopped or interrupted stream ended."""

    type: Literal["message-metadata"]
    messageMetadata: EndMetadata


class AbortPart(_Part):
    type: Literal["abort"]


class ErrorPart(_Part):
    type: Literal["error"]
    errorText: str = Field(description="`<code>: <message>` with our error code")


PART_MODELS: tuple[type[_Part], ...] = (
    StartPart, TextStartPart, TextDeltaPart, TextEndPart, QuizQuestionPart, QuizPart, DiagramPart,
    QueuedPart, ShutdownPart, FinishPart, MessageMetadataPart, AbortPart, ErrorPart,
)  # fmt: skip
UIPart = Annotated[
    StartPart | TextStartPart | TextDeltaPart | TextEndPart | QuizQuestionPart | QuizPart | DiagramPart
    | QueuedPart | ShutdownPart | FinishPart | MessageMetadataPart | AbortPart | ErrorPart,
    Field(discriminator="type"),
]  # fmt: skip
