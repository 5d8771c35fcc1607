"""What a block is, and the registry of blocks an app serves.

A :class:`Block` is one object holding everything the server knows of a block: its
name, system prompt, input and token limits, what it asks of the provider (a JSON
schema, a grammar, a temperature), the shaper that turns its tokens into typed events,
the result model of its ``done`` event and the payload models of those events (for the
contract). The four built-in blocks (``quartapp.blocks``) are registered through the
same :meth:`BlockRegistry.register` a team calls for its own.

System prompts live in server code only. The client sends text; it is passed as user
content between delimiters and can never set a role.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from ..providers.base import GenerationRequest, Message
from ..streams.events import BLOCK_FOLDS, CORE_FOLDS, Fold

Event = tuple[str, dict[str, object]]

#: A block name: it becomes part of URLs, metric labels and event payloads.
BLOCK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

#: Event types the core sends for every block; a block's own events must not reuse them.
CORE_EVENTS = frozenset({"start", "queued", "token", "snapshot", "reset", "done", "error", "shutdown"})


class Shaper(Protocol):
    """Turns one run's raw model text into events and a result.

    ``feed`` gets coalesced text as it arrives and returns the events to send for it;
    ``result()`` is what was produced so far (the partial answer of a stopped or failed
    stream); ``finish()`` the validated final result (raise ``ProviderBadOutput`` when
    there is nothing usable)."""

    def feed(self, text: str, tokens: int) -> list[Event]: ...

    def result(self) -> BaseModel: ...

    def finish(self) -> BaseModel: ...


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A way to continue a block's thread ("simpler", "another question"): what the model is asked."""

    #: What the page's button says.
    label: str
    #: What the model is told, before the topic (or the learner's own words) between delimiters.
    instruction: str
    #: A quiz follow-up asks for this many questions (None: the request's).
    num_questions: int | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier turn of a block's thread, as the log kept it."""

    input: str
    answer: str
    #: Set for a follow-up turn (as on a request), None for the thread's first turn.
    parent_stream_id: str | None = None
    follow_up: str | None = None


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """A validated request for one block: clamped, bounded, ready for the engine."""

    block: Block
    #: The learner's text; for a follow-up without words of its own, the thread's topic.
    input: str
    max_tokens: int
    num_questions: int = 3
    #: Honoured by the scripted provider only (tests, benchmarks); real models ignore it.
    scripted_interval_ms: float | None = None
    #: A follow-up: the stream it continues, the kind (a key of ``Block.follow_ups``, or None for
    #: the learner's own question) and the thread's earlier turns, oldest first, within budget.
    parent_stream_id: str | None = None
    follow_up: str | None = None
    history: tuple[Turn, ...] = ()
    #: The requester may see the answers with the questions (a quiz's answer key: a teacher).
    answer_key: bool = False

    @property
    def block_type(self) -> str:
        return self.block.name

    @property
    def folds(self) -> dict[str, Fold]:
        """Every event's fold for this block's streams: the core ones and the block's own."""
        return self.block.event_folds


class BlockDefinitionError(ValueError):
    """A block that cannot be registered (raised by ``register_block``, never on a request)."""


#: Worked examples of a block: ``(input, output)`` pairs.
Examples = tuple[tuple[str, str], ...]


def _text_lead(request: BlockRequest) -> str:
    return "The topic"


def _framed(lead: str, text: str) -> str:
    """The learner's text set between delimiters, after what introduces it."""
    return f"{lead}:\n<<<\n{text}\n>>>"


@dataclass(frozen=True, slots=True)
class Block:
    """One block type. Only ``name``, ``system_prompt`` and ``shaper`` are required."""

    #: URL-safe identifier: ``/api/stream/ai-block/<name>``.
    name: str
    system_prompt: str
    #: Makes the run's shaper (one per generation).
    shaper: Callable[[BlockRequest], Shaper]
    #: The model of ``done.result`` (and of the whole-result route's ``result``).
    result_model: type[BaseModel] | None = None
    #: Payload models of the events the shaper sends besides the core ones, by event type.
    events: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    #: How each of those events folds into the stream's state, which a late reader's snapshot
    #: carries: ``Fold.TEXT`` (its ``text`` adds to the text) or ``Fold.QUESTION``. An event not
    #: named here is sent and replayed but changes no state.
    folds: Mapping[str, Fold] = field(default_factory=dict)
    description: str = ""
    #: How the learner's text is introduced to the model (it is then set between delimiters).
    lead: Callable[[BlockRequest], str] = _text_lead
    #: Longest input accepted, in characters (None: the server's MAX_INPUT_CHARS); never above it.
    max_input_chars: int | None = None
    #: Token budget when the client asks for none (None: the server's MAX_TOKENS); never above it.
    default_max_tokens: int | None = None
    #: The least a structured block needs to finish (clients cannot ask for less).
    min_tokens: Callable[[BlockRequest], int] | None = None
    temperature: float = 0.3
    #: Nucleus sampling and llama.cpp's repeat penalty for this block (None: the provider's defaults).
    top_p: float | None = None
    repeat_penalty: float | None = None
    #: JSON schema the output must follow; providers that can constrain decoding do.
    json_schema: Callable[[BlockRequest], dict[str, Any]] | None = None
    #: GBNF grammar for output a JSON schema cannot describe; optional for providers to honour.
    grammar: str | None = None
    #: A further provider call after one ended (say, for quiz questions that were dropped), or None.
    retry: Callable[[BlockRequest, Shaper], GenerationRequest | None] | None = None
    max_attempts: int = 1
    #: Worked examples, ``(input, output)`` pairs sent as earlier turns before the learner's input
    #: (or a function of the request giving them, when the output depends on it, as a quiz's
    #: number of questions does): a small model copies a shape it has seen far better than one
    #: it was told. Keep their topics far from any learner's, so the content is not copied too.
    examples: Examples | Callable[[BlockRequest], Examples] = ()
    #: Output of the right shape for the scripted provider (tests, demos); None: generic Markdown.
    scripted: Callable[[BlockRequest], str] | None = None
    #: How a finished turn can be continued, by kind (``simpler``, ``another_question``, ...).
    follow_ups: Mapping[str, FollowUp] = field(default_factory=dict)

    @property
    def event_folds(self) -> dict[str, Fold]:
        """Every event's fold in this block's streams: the core events' and the block's own."""
        return {**CORE_FOLDS, **self.folds}

    def validate(self) -> None:
        """Raise :class:`BlockDefinitionError` naming what is wrong with this definition."""
        where = f"block {self.name!r}"
        if not isinstance(self.name, str) or not BLOCK_NAME.match(self.name):
            raise BlockDefinitionError(f"{where}: the name must match {BLOCK_NAME.pattern} (a URL-safe identifier)")
        if not isinstance(self.system_prompt, str) or not self.system_prompt.strip():
            raise BlockDefinitionError(f"{where}: system_prompt must be non-empty text")
        if not callable(self.shaper):
            raise BlockDefinitionError(f"{where}: shaper must be a callable that makes a shaper for a request")
        if self.result_model is not None and not (
            isinstance(self.result_model, type) and issubclass(self.result_model, BaseModel)
        ):
            raise BlockDefinitionError(f"{where}: result_model must be a pydantic model class")
        for event_type, model in self.events.items():
            if event_type in CORE_EVENTS or not re.match(r"^[a-z][a-z0-9_.]{0,63}$", event_type):
                raise BlockDefinitionError(f"{where}: {event_type!r} is not allowed as an event type of a block")
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise BlockDefinitionError(f"{where}: the payload of {event_type!r} must be a pydantic model class")
        for event_type, fold in self.folds.items():
            payload = self.events.get(event_type)
            if payload is None or fold not in BLOCK_FOLDS:
                raise BlockDefinitionError(
                    f"{where}: folds must map this block's own events to Fold.TEXT or Fold.QUESTION"
                    f" ({event_type!r}: {fold!r})"
                )
            needed = "text" if fold is Fold.TEXT else "question"
            if needed not in payload.model_fields:
                raise BlockDefinitionError(f"{where}: {event_type!r} folds as {fold.name} but has no {needed!r} field")
        if self.max_attempts < 1 or (self.max_attempts > 1 and self.retry is None):
            raise BlockDefinitionError(f"{where}: max_attempts > 1 needs a retry function")
        for limit in (self.max_input_chars, self.default_max_tokens):
            if limit is not None and limit < 1:
                raise BlockDefinitionError(f"{where}: limits must be positive")

    def token_budget(self, request_max: int | None, request: BlockRequest, server_max: int) -> int:
        """The client's ask (or this block's default) clamped to the server's maximum, and
        never below what the block needs to finish."""
        needed = self.min_tokens(request) if self.min_tokens is not None else 0
        default = self.default_max_tokens or needed or server_max
        return max(min(request_max or default, server_max), min(needed, server_max))

    def generation_request(self, request: BlockRequest) -> GenerationRequest:
        """What the provider sees for a request of this block."""
        hints: dict[str, Any] = {"topic": request.input, "num_questions": request.num_questions}
        if request.scripted_interval_ms is not None:
            hints["interval_ms"] = request.scripted_interval_ms
        if self.scripted is not None:
            hints["scripted_text"] = self.scripted(request)
        lead = self.lead(request)
        examples = self.examples(request) if callable(self.examples) else self.examples
        shots = tuple(
            message
            for example, answer in examples
            for message in (Message("user", _framed(lead, example)), Message("assistant", answer))
        )
        thread = tuple(
            message
            for turn in request.history
            for message in (
                Message("user", self._asked(turn.follow_up, lead, turn.input, turn.parent_stream_id)),
                Message("assistant", turn.answer),
            )
        )
        return GenerationRequest(
            messages=(
                Message("system", self.system_prompt),
                *shots,
                *thread,
                Message("user", self._asked(request.follow_up, lead, request.input, request.parent_stream_id)),
            ),
            max_tokens=request.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            repeat_penalty=self.repeat_penalty,
            json_schema=self.json_schema(request) if self.json_schema is not None else None,
            grammar=self.grammar,
            block_type=self.name,
            hints=hints,
        )

    def _asked(self, follow_up: str | None, lead: str, text: str, parent: str | None) -> str:
        """The user message of a turn: the topic, a follow-up's instruction, or the learner's own
        follow-up question (``parent`` set, no kind)."""
        if follow_up is not None and follow_up in self.follow_ups:
            return _framed(self.follow_ups[follow_up].instruction, text)
        if parent:
            return _framed(FREE_FOLLOW_UP, text)
        return _framed(lead, text)


#: How the learner's own follow-up question is introduced.
FREE_FOLLOW_UP = "The learner asks a follow-up question about your answer above"


class BlockRegistry(Mapping[str, Block]):
    """The blocks an app serves, by name, in registration order."""

    def __init__(self, blocks: Mapping[str, Block] | None = None) -> None:
        self._blocks: dict[str, Block] = dict(blocks or {})

    def register(self, block: Block) -> Block:
        """Add ``block``; a bad definition or a taken name fails here, not on a request."""
        if not isinstance(block, Block):
            raise BlockDefinitionError(f"register_block expects a Block, not {type(block).__name__}")
        block.validate()
        if block.name in self._blocks:
            raise BlockDefinitionError(f"block {block.name!r} is already registered")
        self._blocks[block.name] = block
        return block

    def copy(self) -> BlockRegistry:
        return BlockRegistry(self._blocks)

    def __getitem__(self, name: str) -> Block:
        return self._blocks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._blocks)
