"""The writer: creates and appends to the streams this instance produces, fenced by leases.

Every append is one script (:class:`~.scripts.AppendCall`), retried through a Redis outage
for ``APPEND_RETRY_S``; the script remembers the last append id, so a retry whose first
reply was lost does not add the event twice. Leases are renewed every lease/3. When Redis
comes back without events it had acknowledged, the stream is re-based (``_REBASE``) from
the state this writer folded.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from pydantic_core import to_json

from ..events import CORE_FOLDS, Entry, Fold
from ..log import Fenced, LogUnavailable, StreamInfo, StreamState, text_step
from .scripts import PRODUCE, TAKEOVER, AppendCall, CreateCall, RebaseCall, RenewCall
from .shared import TRANSIENT, Shared, unavailable

log = logging.getLogger(__name__)

APPEND_RETRY_S = 5.0  # a producer rides out a Redis outage this long, then LogUnavailable
CREATE_RETRY_S = 2.0

T = TypeVar("T")


class NotDue(Exception):
    """A takeover append found the stream alive (its lease came back) or already moved on."""


class Writer:
    """The producing side: our lease tokens, the seqs Redis acknowledged, and the state to re-base from."""

    def __init__(self, shared: Shared, start: Callable[[], None]) -> None:
        self._shared = shared
        self._start = start  # the instance's background tasks, on first use
        self._produced: dict[str, str] = {}  # stream id -> our lease token
        self._acked: dict[str, int] = {}  # stream id -> the last seq Redis acknowledged to us
        self._states: dict[str, StreamState] = {}  # what we produced, to re-seed a rolled-back Redis

    def produces(self, stream_id: str) -> bool:
        """Whether this instance holds the stream's lease (a stop request is then handled here)."""
        return stream_id in self._produced

    async def create(self, stream_id: str, owner: str, block_type: str) -> StreamInfo:
        self._start()
        shared = self._shared
        keys = shared.keys(stream_id)
        created_at = time.time()
        for _ in range(5):  # a fresh epoch unless it collides with a live one
            epoch = secrets.token_hex(6)
            call = CreateCall(
                stream=keys,
                epoch_key=shared.epoch_key(epoch),
                fence_key=shared.fence_key,
                owner=owner,
                block_type=block_type,
                created_at=repr(created_at),
                epoch=epoch,
                instance=shared.instance,
                lease_ms=shared.lease_ms,
                safety_ms=shared.safety_ms,
                stream_id=stream_id,
            )
            token: Any = await retrying(CREATE_RETRY_S, lambda: shared.scripts.create(call))  # noqa: B023
            if token:
                break
        else:
            raise LogUnavailable("could not find a free epoch")
        self._produced[stream_id] = token.decode()
        return StreamInfo(stream_id, epoch, owner, block_type, created_at, 1, 0, "running", None)

    async def append(self, stream_id: str, event_type: str, data: dict[str, Any], fold: Fold | None = None) -> Entry:
        """Append the event and, in the same script, what it adds to the stream's state: the
        steps of :meth:`StreamState.apply` (text, tokens, a question, the start, the end)."""
        if fold is None:
            fold = CORE_FOLDS.get(event_type, Fold.NOTHING)
        payload = to_json(data)
        text, tokens, question, start, status, ended_at = "", 0, b"", b"", "", ""
        if fold is Fold.TEXT:
            text, tokens = text_step(data)
        elif fold is Fold.QUESTION:
            question = to_json(data["question"])
        elif fold is Fold.START:
            start = payload
        elif fold is Fold.END:
            status, ended_at = data["status"], repr(time.time())
        self._start()
        shared = self._shared
        call = AppendCall(
            stream=shared.keys(stream_id),
            epoch_key=shared.epoch_key(""),  # looked up if this is the end (see _run_append)
            mode=PRODUCE,
            token=self._produced.get(stream_id) or f"{shared.instance}:0",
            append_id=secrets.token_hex(8),
            event_type=event_type,
            fold=fold,
            payload=payload,
            maxlen=shared.history,
            lease_ms=shared.lease_ms,
            text=text,
            tokens=tokens,
            question=question,
            start=start,
            end_status=status,
            ended_at=ended_at,
            retention_ms=shared.retention_ms,
            safety_ms=shared.safety_ms,
            acked=self._acked.get(stream_id, 0),
        )
        return await self._run_append(stream_id, call, data, budget=APPEND_RETRY_S)

    async def end_lost(self, stream_id: str, epoch: str, last_seq: int, data: dict[str, Any]) -> Entry:
        """End a stream whose producer died with ``error`` ``data`` (interrupted), as a takeover:
        only while it has no lease and is still at ``last_seq``, else :class:`NotDue`."""
        shared = self._shared
        call = AppendCall(
            stream=shared.keys(stream_id),
            epoch_key=shared.epoch_key(epoch),
            mode=TAKEOVER,
            expected_seq=last_seq,
            append_id=secrets.token_hex(8),
            event_type="error",
            fold=Fold.END,
            payload=to_json(data),
            maxlen=shared.history,
            lease_ms=shared.lease_ms,
            end_status="interrupted",
            ended_at=repr(time.time()),
            retention_ms=shared.retention_ms,
            safety_ms=shared.safety_ms,
        )
        return await self._run_append(stream_id, call, data, budget=1.0)

    async def _run_append(
        self, stream_id: str, call: AppendCall, data: dict[str, Any], budget: float, rebased: bool = False
    ) -> Entry:
        shared = self._shared

        async def attempt() -> list[Any]:
            nonlocal call  # the looked-up epoch key holds for every retry, and after a re-base
            if call.end_status and call.epoch_key == shared.epoch_key(""):  # terminal: the epoch key expires too
                epoch: Any = await shared.client.hget(call.stream.meta, "epoch")
                call = replace(call, epoch_key=shared.epoch_key(epoch.decode() if epoch else ""))
            return await shared.scripts.append(call)

        try:
            result = await retrying(budget, attempt)
        except LogUnavailable:
            self._forget(stream_id)  # stop renewing: readers will see producer_lost
            raise
        seq = int(result[0])
        if seq == -4 and rebased is False:
            await self._rebase(stream_id, call.acked)
            return await self._run_append(stream_id, call, data, budget, rebased=True)
        if seq == -2:
            self._forget(stream_id)
            raise LogUnavailable(f"stream {stream_id} is gone from the log (expired, or Redis lost its data)")
        if seq < 0:
            if call.mode == PRODUCE:
                self._forget(stream_id)
                raise Fenced(stream_id)
            raise NotDue
        entry = Entry(stream_id, result[1].decode(), seq, call.event_type, data, json=call.payload)
        if len(result) > 2 and call.acked > result[2]:
            log.warning(
                "stream %s: redis lost events %d..%d (restarted without them)", stream_id, result[2] + 1, call.acked
            )
        if call.mode == PRODUCE and not call.end_status:
            self._produced[stream_id] = call.token
            self._acked[stream_id] = seq
            self._states.setdefault(stream_id, StreamState()).apply(call.fold, data)
        elif call.end_status:
            self._forget(stream_id)
        return entry

    def _forget(self, stream_id: str) -> None:
        """We no longer produce this stream: stop renewing its lease."""
        self._produced.pop(stream_id, None)
        self._acked.pop(stream_id, None)
        self._states.pop(stream_id, None)

    async def _rebase(self, stream_id: str, acked: int) -> None:
        """Redis lost events it had acknowledged: a new incarnation with our state (see _REBASE)."""
        state = self._states.get(stream_id, StreamState())
        epoch = secrets.token_hex(4)
        call = RebaseCall(
            stream=self._shared.keys(stream_id),
            epoch_key=self._shared.epoch_key(epoch),
            epoch=epoch,
            acked=acked,
            text="".join(state.parts),
            output_tokens=state.output_tokens,
            start=to_json(state.start) if state.start else b"",
            stream_id=stream_id,
            safety_ms=self._shared.safety_ms,
            questions=tuple(to_json(q) for q in state.questions),
        )

        async def rebase() -> object:
            return await self._shared.scripts.rebase(call)

        await retrying(APPEND_RETRY_S, rebase)
        log.warning("stream %s: redis lost acknowledged events; re-based as epoch %s after %d", stream_id, epoch, acked)

    async def renew_loop(self) -> None:
        """Keep our leases every lease/3; a lease found lost fences the stream's next append."""
        shared = self._shared
        while not shared.closed:
            await asyncio.sleep(shared.lease_s / 3)
            leases = list(self._produced.items())
            if not leases:
                continue
            try:
                async with shared.client.pipeline(transaction=False) as pipe:
                    for stream_id, token in leases:
                        call = RenewCall(stream=shared.keys(stream_id), token=token, lease_ms=shared.lease_ms)
                        await shared.scripts.renew(call, pipe)
                    results = await pipe.execute()
            except Exception as exc:
                log.warning("redis log: lease renewal failed: %r", exc)
                continue
            for (stream_id, token), ok in zip(leases, results, strict=True):
                if not ok and self._produced.get(stream_id) == token:
                    self._forget(stream_id)  # its next append raises Fenced

    def clear(self) -> None:
        """The log closed: we produce nothing any more (streams left running end as producer_lost)."""
        self._produced.clear()
        self._acked.clear()


async def retrying(budget: float, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call``; ride out connection errors with short backoff for ``budget`` s, then LogUnavailable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    delay = 0.05
    for _ in range(1000):
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.5)):
                return await call()
        except TRANSIENT as exc:
            if loop.time() + delay >= deadline:
                raise unavailable(exc) from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise LogUnavailable("redis: retries exhausted")
