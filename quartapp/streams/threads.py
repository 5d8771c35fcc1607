"""A block's thread: the earlier turns a follow-up builds on, read back from the log.

A follow-up ("simpler", "another question") is a stream like any other, whose ``start``
event names the stream it continues (``parent_stream_id``) and says what was asked
(``input``, ``follow_up``). The thread is therefore kept where every stream is kept (memory
or Redis, resumable, readable from a second tab) and rebuilt here by walking the parents,
newest first, as far as ``FOLLOW_UP_CONTEXT_TOKENS`` allows.
"""

from __future__ import annotations

import json
from typing import Any

from ..engine.blocks import Turn
from .log import StreamInfo, StreamLog

#: The most turns a follow-up's prompt carries, whatever the budget.
MAX_TURNS = 8
#: Characters per token, for the budget (the same estimate the runner uses for usage).
CHARS_PER_TOKEN = 4


def _turn(state: dict[str, Any]) -> Turn:
    start = state.get("start") or {}
    answer = state.get("text") or ""
    if not answer and state.get("questions"):
        answer = json.dumps({"questions": state["questions"]})  # a quiz's turn: its questions
    return Turn(
        input=str(start.get("input") or ""),
        answer=answer,
        parent_stream_id=start.get("parent_stream_id"),
        follow_up=start.get("follow_up"),
    )


async def earlier_turns(log: StreamLog, parent: StreamInfo, budget_tokens: int) -> tuple[Turn, ...]:
    """The turns up to and including ``parent``, oldest first: the newest that fit the budget
    (the newest always, its answer cut to fit), never crossing to another owner's stream."""
    turns: list[Turn] = []
    used = 0
    info: StreamInfo | None = parent
    while info is not None and len(turns) < MAX_TURNS:
        state, _ = await log.snapshot(info.stream_id)
        turn = _turn(state)
        cost = (len(turn.input) + len(turn.answer)) // CHARS_PER_TOKEN
        if turns and used + cost > budget_tokens:
            break
        if not turns and cost > budget_tokens:
            keep = max(0, budget_tokens * CHARS_PER_TOKEN - len(turn.input))
            turn = Turn(turn.input, turn.answer[:keep], turn.parent_stream_id, turn.follow_up)
        turns.append(turn)
        used += cost
        above = await log.info(turn.parent_stream_id) if turn.parent_stream_id else None
        info = above if above is not None and above.owner == parent.owner else None
    return tuple(reversed(turns))
