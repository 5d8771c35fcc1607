"""Shared generations: identical requests read one generation instead of each calling the model.

A class asking the same thing at the same moment on one CPU-bound model is the typical
load. With ``SHARED_GENERATIONS`` the manager runs a block's generation into a stream of
its own (owner ``g:<key>``), and every requester gets a stream of its own that
**mirrors** it (:class:`MirrorRun`): its own id, owner, limits, resume and stop. A stop
detaches that requester only; the generation stops when no requester still mirrors it.

:func:`generation_key` says what "identical" means: the block, the input up to case and
runs of white space, the options, and the provider and model. Only a generation that
completed is replayed from the log afterwards (for ``SHARED_CACHE_TTL_S``): a failed or
stopped one is never served to anyone else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncGenerator
from typing import Any, Literal

from ..engine import BlockRequest
from ..providers.base import ProviderInfo, Usage
from .events import TERMINAL, Entry, Fold
from .log import StreamState

#: The owner of a generation's own stream; no client owns it, so no client can read it directly.
GENERATION_OWNER = "g:"
#: The log alias under which a generation's stream is found (``set_alias`` / ``find_alias``).
ALIAS_OWNER = "g"

Event = tuple[str, dict[str, Any]]

#: How a request's generation was found: made for it, running already, or completed (replayed).
Found = Literal["new", "running", "complete"]


def generation_key(request: BlockRequest, provider: ProviderInfo) -> str:
    """The identity of a generation: equal for requests that must get the same answer."""
    text = " ".join(request.input.casefold().split())
    material = [
        request.block_type,
        text,
        request.max_tokens,
        request.num_questions,
        request.scripted_interval_ms,
        provider.name,
        provider.model,
    ]
    return hashlib.sha256(json.dumps(material, separators=(",", ":")).encode()).hexdigest()[:32]


class MirrorRun:
    """What the manager's producer runs for a requester of a shared generation: the
    generation's events, copied into the requester's own stream as they come.

    It offers what the producer uses of :class:`~quartapp.engine.Run`: ``events()``,
    ``usage()``, ``done_data()`` and ``error_data()`` (for a stop, the deadline or a failure
    of its own), computed from what it copied, so a stopped mirror keeps its text.
    """

    def __init__(
        self,
        request: BlockRequest,
        stream_id: str,
        source: AsyncGenerator[list[Entry], None],
        found: Found,
    ) -> None:
        self.request = request
        self.stream_id = stream_id
        self._source = source
        #: What the start event adds: whether the stream shares a generation begun for another
        #: request, and whether it had completed (the stream then replays at once).
        self._marks = {} if found == "new" else {"shared": True, "cached": found == "complete"}
        self._state = StreamState()
        self._usage: dict[str, int] | None = None

    async def events(self) -> AsyncGenerator[Event, None]:
        state, folds = self._state, self.request.folds
        async with contextlib.aclosing(self._source) as source:  # a stopped mirror stops reading at once
            async for batch in source:
                for entry in batch:
                    for event_type, data in self._translate(entry):
                        state.apply(folds.get(event_type, Fold.NOTHING), data)
                        if event_type in TERMINAL:
                            usage = data.get("usage")
                            self._usage = dict(usage) if isinstance(usage, dict) else None
                        yield event_type, data
                    if entry.type in TERMINAL:
                        return

    def _translate(self, entry: Entry) -> list[Event]:
        """The generation's event as this requester's stream carries it."""
        data: dict[str, Any] = entry.data if entry.data is not None else entry.decoded()  # once encoded: bytes only
        if entry.type == "start":
            return [("start", {**data, "stream_id": self.stream_id, **self._marks})]
        if entry.type == "snapshot":  # a long generation replayed from its start: its state so far
            events: list[Event] = []
            if data.get("start"):
                events.extend(self._translate(Entry(entry.stream_id, entry.epoch, entry.seq, "start", data["start"])))
            if data.get("text"):
                events.append(("token", {"text": data["text"], "tokens": max(1, int(data["output_tokens"]))}))
            questions = data.get("questions")
            if questions:  # as the block's own question event (the quiz's ``quiz.question``)
                event_type = next(name for name, fold in self.request.folds.items() if fold is Fold.QUESTION)
                events.extend((event_type, {"index": index, "question": q}) for index, q in enumerate(questions))
            return events
        if entry.type == "reset":
            return []  # followed by the snapshot that replaces the state
        if entry.data is not None:  # the generation's own dict, not yet encoded: never share it
            data = dict(data)  # (this stream's log merges the next token into what it holds)
        return [(entry.type, data)]

    def usage(self) -> Usage:
        if self._usage is not None:
            return Usage(int(self._usage.get("input_tokens", 0)), int(self._usage.get("output_tokens", 0)))
        return Usage(0, self._state.output_tokens)

    def _result(self) -> dict[str, object]:
        state = self._state
        result: dict[str, object] = {"block_type": self.request.block_type, "text": "".join(state.parts)}
        if state.questions:
            result["questions"] = list(state.questions)
        return result

    def _usage_data(self) -> dict[str, int]:
        usage = self.usage()
        return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}

    def done_data(self, status: str, reason: str) -> dict[str, object]:
        return {"status": status, "reason": reason, "usage": self._usage_data(), "result": self._result()}

    def error_data(self, code: str, message: str, status: str, retryable: bool) -> dict[str, object]:
        return {
            "code": code,
            "message": message,
            "status": status,
            "retryable": retryable,
            "usage": self._usage_data(),
            "result": self._result(),
        }
