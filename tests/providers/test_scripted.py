"""The scripted provider's clock: token 0 at once, then one token every interval.

That is the clock of the benchmark peers (``../shared/bench/peers``: a token, then a sleep), so the
product's figures on a model's clock compare like with like. Checked without timing anything: a
token that is due is handed over without the provider suspending, one that is not yet due suspends.
"""

from __future__ import annotations

import contextlib

from quartapp.eager import cancel_started, run_until_suspended
from quartapp.providers.base import Delta, GenerationRequest, Message
from quartapp.providers.scripted import ScriptedProvider


def _request(interval_ms: float) -> GenerationRequest:
    messages = (Message("user", "Why is the sky blue?"),)
    return GenerationRequest(messages=messages, max_tokens=5, hints={"interval_ms": interval_ms})


async def test_the_first_token_is_due_at_once_and_the_next_one_interval_later() -> None:
    async with contextlib.aclosing(ScriptedProvider().stream(_request(interval_ms=60_000))) as deltas:
        ready, first, _ = run_until_suspended(deltas.__anext__())
        assert ready, "token 0 waited for an interval"
        assert isinstance(first, Delta) and first.text and first.tokens == 1
        second = deltas.__anext__()
        ready, _, _ = run_until_suspended(second)
        assert not ready, "token 1 came without waiting its interval"
        await cancel_started(second)


async def test_at_interval_zero_every_token_is_due_at_once() -> None:
    async with contextlib.aclosing(ScriptedProvider().stream(_request(interval_ms=0))) as deltas:
        for _ in range(5):
            ready, delta, _ = run_until_suspended(deltas.__anext__())
            assert ready and isinstance(delta, Delta) and delta.tokens == 1
