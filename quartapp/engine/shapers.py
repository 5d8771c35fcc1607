"""Output shapers: turn a block's raw model text into typed events and a final result.

A shaper is fed coalesced text as it arrives and returns the events to send
for it; ``result()`` gives what was produced so far (used for ``done`` and,
when a stream is stopped or fails, for keeping the partial answer), and
``finish()`` the validated final result.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json, to_json

from ..providers.base import ProviderBadOutput
from ..streams.events import BlockResult
from .blocks import Event, Shaper

log = logging.getLogger(__name__)

__all__ = ("Event", "JSONItemsShaper", "Shaper", "TextShaper")


class TextShaper:
    """Markdown answers (ask, ELI10): each coalesced piece is one ``token`` event."""

    # Slots: a token reads the shaper, and a slotted object is one place in memory, not an
    # object and its attribute values apart (bench/results/measurements-2026-12-07-stop30.md).
    __slots__ = ("_block", "_parts")

    def __init__(self, block_type: str) -> None:
        self._block = block_type
        self._parts: list[str] = []

    def feed(self, text: str, tokens: int) -> list[Event]:
        self._parts.append(text)
        return [("token", {"text": text, "tokens": tokens})]

    def result(self) -> BlockResult:
        return BlockResult(block_type=self._block, text="".join(self._parts))

    def finish(self) -> BlockResult:
        text = "".join(self._parts).strip()
        if not text:
            raise ProviderBadOutput("the model returned an empty answer")
        return BlockResult(block_type=self._block, text=text)


class JSONItemsShaper(ABC):
    """JSON output ``{"<key>": [item, item, ...]}``: one event the moment an item's closing
    brace arrives, validated with ``item_model``.

    A tiny string-aware scanner tracks JSON depth over the new text only; when an object
    inside the array closes, the buffer is parsed as partial JSON (pydantic-core) and that
    item is validated and sent as ``event_type`` with ``{"index": i, "<item_field>": item}``.
    The buffer is parsed only then, never per token. Subclasses refine :meth:`accept`
    (drop repeats) and :meth:`make_result`.
    """

    #: The array's key in the top-level object, and the event each accepted item becomes.
    key: str = "items"
    event_type: str = "item"
    item_field: str = "item"
    item_model: type[BaseModel] = BaseModel

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._closed_items = 0
        self._attempted = 0  # array items already validated (accepted or dropped)
        self._sent = 0  # accepted items already sent as events
        self.items: list[Any] = []

    def feed(self, text: str, tokens: int) -> list[Event]:
        self._parts.append(text)
        if not self._scan(text):
            return []
        return self._emit_new()

    def next_attempt(self) -> None:
        """A new provider call continues the list: fresh JSON buffer, same accepted items."""
        self._parts = []
        self._depth, self._in_string, self._escape = 0, False, False
        self._closed_items = self._attempted = 0

    def _scan(self, text: str) -> int:
        closed = 0
        depth, in_string, escape = self._depth, self._in_string, self._escape
        for ch in text:
            if in_string:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if ch == "}" and depth == 2:
                    closed += 1
        self._depth, self._in_string, self._escape = depth, in_string, escape
        self._closed_items += closed
        return closed

    def _buffer(self) -> str:
        text = "".join(self._parts)
        start = text.find("{")
        return text[start:] if start >= 0 else ""

    def _emit_new(self) -> list[Event]:
        try:
            value = from_json(self._buffer(), allow_partial=True)
        except ValueError:
            return []
        items = value.get(self.key) if isinstance(value, dict) else None
        if not isinstance(items, list):
            return []
        for raw in items[self._attempted : self._closed_items]:
            self._attempted += 1
            self._validate(raw)
        return self.closing_events()

    def closing_events(self) -> list[Event]:
        """The events of accepted items not sent yet (the run asks again after ``finish``, for
        items only the complete JSON held)."""
        events: list[Event] = []
        for index in range(self._sent, len(self.items)):
            events.extend(self.item_events(index, self.items[index]))
        self._sent = len(self.items)
        return events

    def item_events(self, index: int, item: Any) -> list[Event]:
        """What an accepted item is sent as (override to keep part of it on the server)."""
        return [(self.event_type, {"index": index, self.item_field: item.model_dump()})]

    def _validate(self, raw: object) -> BaseModel | None:
        try:
            item = self.item_model.model_validate(raw)
        except ValidationError as exc:
            log.info("%s dropped: %s", self.item_field, exc.errors()[0]["msg"])
            return None
        if not self.accept(item):
            return None
        self.items.append(item)
        return item

    def accept(self, item: Any) -> bool:
        """Whether a valid item is kept (override to drop repeats)."""
        return True

    def _finish_items(self) -> None:
        buffer = self._buffer()
        if buffer:
            try:
                value = from_json(buffer)
            except ValueError:
                value = None  # an attempt cut short: keep the items it completed
            if isinstance(value, dict) and isinstance(value.get(self.key), list):
                for raw in value[self.key][self._attempted :]:
                    self._attempted += 1
                    self._validate(raw)

    def text(self) -> str:
        return to_json({self.key: [i.model_dump() for i in self.items]}).decode()

    @abstractmethod
    def make_result(self, final: bool) -> BaseModel:
        """The result model for the items so far (``final``: validated, raise ProviderBadOutput);
        each block of items says what its result is."""

    def result(self) -> BaseModel:
        return self.make_result(final=False)

    def finish(self) -> BaseModel:
        self._finish_items()
        return self.make_result(final=True)
