"""The tail: what local readers see, and the one poller that wakes them.

Readers do not each block on Redis: one poller task per instance runs a single ``XREAD
BLOCK`` over every stream a local reader waits on, keeps the recent entries and wakes the
waiters. A waiter also checks Redis every slice: a safety net for a missed wake-up, and
where a producer that died is noticed and its stream ended (``error producer_lost``).
``info`` and ``snapshot`` live here too: they are reads, and the producer_lost end needs both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic_core import from_json

from ..events import Entry
from ..log import LogUnavailable, StreamInfo
from .scripts import ReadCall
from .shared import TRANSIENT, Shared, unavailable
from .writer import NotDue, Writer

log = logging.getLogger(__name__)

POLL_BLOCK_MS = 2000  # XREAD BLOCK: below socket_timeout (redis-py#2807), a cancellation point every 2 s
ERROR_PAUSE_S = 1.0  # a reader whose Redis call failed waits this long before it heartbeats
TAIL_LINGER_S = 5.0  # keep polling a stream this long after its last local waiter left
TAIL_CACHE = 1024  # recent entries kept per polled stream (also XREAD COUNT)


class _Tail:
    """One polled stream: the newest seq seen, recent entries, and the waiters to wake."""

    __slots__ = ("changed", "checked_at", "entries", "epoch", "idle_since", "key", "last_seq", "stream_id", "waiters")

    def __init__(self, stream_id: str, key: str, epoch: str, last_seq: int, cache: int, now: float) -> None:
        self.stream_id = stream_id
        self.key = key
        self.epoch = epoch
        self.last_seq = last_seq
        self.entries: deque[Entry] = deque(maxlen=cache)  # contiguous, ending at last_seq
        self.changed = asyncio.Event()
        self.waiters = 0
        self.idle_since = now
        self.checked_at = 0.0

    def push(self, entry: Entry) -> None:
        if entry.seq <= self.last_seq:
            return
        if entry.seq != self.last_seq + 1:
            self.entries.clear()  # a gap (trimmed under us): the cache restarts here
        self.entries.append(entry)
        self.last_seq = entry.seq

    def wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


def _entry(stream_id: str, epoch: str, raw_id: bytes, fields: Any) -> Entry:
    if not isinstance(fields, dict):  # Lua replies are flat [field, value, ...]
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    seq = int(raw_id.rpartition(b"-")[2])
    return Entry(stream_id, epoch, seq, fields[b"t"].decode(), None, json=fields[b"d"])


class Tail:
    """The streams local readers wait on, polled together; reads served from their recent entries."""

    def __init__(self, shared: Shared, writer: Writer, start: Callable[[], None]) -> None:
        self._shared = shared
        self._writer = writer  # ends a stream whose producer died
        self._start = start  # the instance's background tasks, on first use
        self._tails: dict[str, _Tail] = {}
        self._poll_keys: frozenset[str] = frozenset()  # the streams the running XREAD covers
        self._polling = False
        self._poll_wake = asyncio.Event()

    def offer(self, entry: Entry) -> None:
        """An entry this instance appended: local readers need not wait for the poller."""
        tail = self._tails.get(entry.stream_id)
        if tail is not None and entry.seq == tail.last_seq + 1:
            tail.push(entry)
            tail.wake()

    async def read(self, stream_id: str, after_seq: int, limit: int) -> list[Entry]:
        tail = self._tails.get(stream_id)
        if tail is not None and tail.entries and tail.entries[0].seq <= after_seq + 1 <= tail.last_seq:
            start = after_seq + 1 - tail.entries[0].seq
            return [tail.entries[i] for i in range(start, min(start + limit, len(tail.entries)))]
        call = ReadCall(stream=self._shared.keys(stream_id), after=after_seq, limit=limit, history=self._shared.history)
        try:
            reply = await self._shared.scripts.read(call)
        except TRANSIENT as exc:
            log.debug("stream %s: read failed: %s", stream_id, exc)  # the poller warns, once per instance
            return []
        if not reply:
            return []
        epoch = reply[0].decode()
        return [_entry(stream_id, epoch, raw_id, fields) for raw_id, fields in reply[1]]

    async def wait(self, stream_id: str, after_seq: int, timeout: float) -> list[Entry]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._start()
        try:
            tail = await self._attach(stream_id)
        except TRANSIENT as exc:
            log.debug("stream %s: wait failed: %s", stream_id, exc)  # the poller warns, once per instance
            await asyncio.sleep(min(timeout, ERROR_PAUSE_S))
            return []
        if tail is None:
            return []
        slice_s = self._shared.slice
        try:
            await self._join_poll(tail)
            for _ in range(int(timeout / slice_s) + 1000):
                if tail.last_seq > after_seq:
                    entries = await self.read(stream_id, after_seq, self._shared.history)
                    if entries:
                        return entries
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                changed = tail.changed
                try:
                    async with asyncio.timeout(min(remaining, slice_s)):
                        await changed.wait()
                except TimeoutError:
                    try:
                        if not await self._check(tail, after_seq):
                            return []  # the stream is gone
                    except (*TRANSIENT, LogUnavailable) as exc:
                        log.debug("stream %s: check failed: %s", stream_id, exc)  # the poller warns, once per instance
                        await asyncio.sleep(max(min(deadline - loop.time(), ERROR_PAUSE_S), 0))
                        return []
            return []
        finally:
            tail.waiters -= 1
            if tail.waiters == 0:
                tail.idle_since = loop.time()

    async def _attach(self, stream_id: str) -> _Tail | None:
        tail = self._tails.get(stream_id)
        if tail is None:
            keys = self._shared.keys(stream_id)
            values: list[Any] = await self._shared.client.hmget(keys.meta, ["epoch", "last_seq"])
            epoch, last = values
            if epoch is None:
                return None
            tail = self._tails.get(stream_id)
            if tail is None:
                cache, now = min(TAIL_CACHE, self._shared.history), asyncio.get_running_loop().time()
                tail = _Tail(stream_id, keys.events, epoch.decode(), int(last), cache, now)
                self._tails[stream_id] = tail
                self._poll_wake.set()
        tail.waiters += 1  # before any other await: the poller drops tails nobody waits on
        return tail

    async def _join_poll(self, tail: _Tail) -> None:
        """A stream the running XREAD does not cover: wake the poller so it joins now, not in 2 s."""
        if not self._polling or tail.stream_id in self._poll_keys:
            return
        wake_key = self._shared.wake_key
        try:
            async with self._shared.client.pipeline(transaction=False) as pipe:
                pipe.xadd(wake_key, {"w": "1"}, maxlen=1)
                pipe.pexpire(wake_key, 60_000)
                await pipe.execute()
        except Exception as exc:  # the slice check still covers this waiter
            log.warning("redis log: could not wake the poller: %r", exc)

    async def _check(self, tail: _Tail, after_seq: int) -> bool:
        """A quiet slice: catch up if the poller missed something; end a stream whose producer died.

        False when the stream is gone."""
        now = asyncio.get_running_loop().time()
        if now - tail.checked_at < self._shared.slice / 2:
            return True  # another waiter of this stream just checked
        tail.checked_at = now
        keys = self._shared.keys(tail.stream_id)
        async with self._shared.client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.meta, ["status", "last_seq"])
            pipe.exists(keys.lease)
            (status, last), leased = await pipe.execute()
        if status is None:
            return False
        if int(last) > tail.last_seq:
            tail.last_seq = int(last)  # the poller fell behind: the next read goes to Redis
            tail.entries.clear()
            tail.wake()
        elif status == b"running" and not leased:
            await self._declare_lost(tail.stream_id, int(last))
        return True

    async def _declare_lost(self, stream_id: str, last_seq: int) -> None:
        """Append ``error producer_lost``, unless someone else ended it or the lease came back."""
        state, through = await self.snapshot(stream_id)
        if through != last_seq:
            return
        info = await self.info(stream_id)
        if info is None or info.status != "running":
            return
        result: dict[str, Any] = {"block_type": info.block_type, "text": state["text"]}
        if info.block_type == "quiz":
            result["questions"] = state["questions"]
        data: dict[str, Any] = {
            "code": "producer_lost",
            "message": "the server producing this stream stopped; start it again",
            "status": "interrupted",
            "retryable": True,
            "result": result,
        }
        with contextlib.suppress(NotDue):
            self.offer(await self._writer.end_lost(stream_id, info.epoch, last_seq, data))
            log.warning("stream %s: producer lost (lease expired); ended it as interrupted", stream_id)

    async def info(self, stream_id: str) -> StreamInfo | None:
        fields = ["owner", "block_type", "created_at", "epoch", "status", "ended_at", "last_seq", "first_seq"]
        try:
            values: list[Any] = await self._shared.client.hmget(self._shared.keys(stream_id).meta, fields)
        except TRANSIENT as exc:
            raise unavailable(exc) from exc
        owner, block_type, created_at, epoch, status, ended_at, last, first = values
        if epoch is None:
            return None
        last_seq = int(last)
        return StreamInfo(
            stream_id=stream_id,
            epoch=epoch.decode(),
            owner=owner.decode(),
            block_type=block_type.decode(),
            created_at=float(created_at),
            first_seq=max(int(first or 1), last_seq - self._shared.history + 1),
            last_seq=last_seq,
            status=status.decode(),
            ended_at=float(ended_at) if ended_at else None,
        )

    async def snapshot(self, stream_id: str) -> tuple[dict[str, Any], int]:
        _, meta, text, questions, _ = self._shared.keys(stream_id)
        try:
            async with self._shared.client.pipeline(transaction=True) as pipe:  # MULTI: consistent with last_seq
                pipe.hmget(meta, ["epoch", "last_seq", "start", "output_tokens"])
                pipe.get(text)
                pipe.lrange(questions, 0, -1)
                (epoch, last, start, output_tokens), text_value, question_values = await pipe.execute()
        except TRANSIENT as exc:
            raise unavailable(exc) from exc
        if epoch is None:
            raise KeyError(stream_id)
        state = {
            "start": from_json(start) if start else None,
            "text": text_value.decode() if text_value else "",
            "questions": [from_json(q) for q in question_values],
            "output_tokens": int(output_tokens or 0),
        }
        return state, int(last)

    async def poll_loop(self) -> None:
        """The one XREAD BLOCK of this instance, over every polled stream and its own wake stream."""
        shared = self._shared
        loop = asyncio.get_running_loop()
        wake_id = b"0-0"
        delay = 0.1
        while not shared.closed:
            now = loop.time()
            for stream_id, tail in list(self._tails.items()):
                if tail.waiters == 0 and now - tail.idle_since > TAIL_LINGER_S:
                    del self._tails[stream_id]
            if not self._tails:
                self._poll_wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TAIL_LINGER_S):
                        await self._poll_wake.wait()
                continue
            tails = {tail.key: tail for tail in self._tails.values()}
            streams: dict[Any, Any] = {key: b"0-%d" % tail.last_seq for key, tail in tails.items()}
            streams[shared.wake_key] = wake_id
            self._poll_keys = frozenset(tail.stream_id for tail in tails.values())
            self._polling = True
            try:
                reply: Any = await shared.client.xread(streams, count=TAIL_CACHE, block=POLL_BLOCK_MS)
            except Exception as exc:  # a connection error, or a bug: never let the poller die
                log.warning("redis log poller: %r; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            finally:
                self._polling = False
            delay = 0.1
            for raw_key, items in reply or ():
                key = raw_key.decode()
                if key == shared.wake_key:
                    wake_id = items[-1][0]
                    continue
                tail = tails[key]
                for raw_id, fields in items:
                    tail.push(_entry(tail.stream_id, tail.epoch, raw_id, fields))
                tail.wake()

    def clear(self) -> None:
        """The log closed: no stream is polled any more."""
        self._tails.clear()
