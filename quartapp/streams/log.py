"""The stream log: where producers append events and readers tail them.

:class:`StreamLog` is the seam between one process and many: the embedded
:class:`MemoryStreamLog` keeps everything in this process; a Redis Streams log
implements the same protocol for many instances. History per stream is
bounded (``STREAM_HISTORY_SIZE``); a finished stream stays readable for
``STREAM_RETENTION_S``, then it is forgotten.

Besides the events, the log keeps each stream's folded state (text so far,
quiz questions so far), so a reader far behind or behind trimmed history gets
one ``snapshot`` instead of a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..eager import Resumed, run_until_suspended
from ..errors import APIError
from .events import CORE_FOLDS, TERMINAL, Entry, Fold, parse_event_id


def text_step(data: dict[str, Any]) -> tuple[str, int]:
    """What a ``Fold.TEXT`` event adds: its text, and the model tokens it holds (1 unless it says)."""
    return data["text"], data.get("tokens", 1)


@dataclass(slots=True)
class StreamState:
    """The fold of a stream's events: what a snapshot carries."""

    start: dict[str, Any] | None = None
    parts: list[str] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)
    output_tokens: int = 0
    status: str = "running"
    end: dict[str, Any] | None = None

    def apply(self, fold: Fold, data: dict[str, Any]) -> None:
        """Fold one event in: the one fold every log keeps (the Redis writer stores its steps)."""
        if fold is Fold.TEXT:
            text, tokens = text_step(data)
            self.parts.append(text)
            self.output_tokens += tokens
        elif fold is Fold.QUESTION:
            self.questions.append(data["question"])
        elif fold is Fold.START:
            self.start = data
        elif fold is Fold.END:
            self.status = data["status"]
            self.end = data

    def snapshot(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "text": "".join(self.parts),
            "questions": list(self.questions),
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: str
    epoch: str
    owner: str
    block_type: str
    created_at: float
    first_seq: int  # oldest retained seq (history may be trimmed)
    last_seq: int
    status: str  # running | complete | stopped | interrupted | failed
    ended_at: float | None

    def read_to_the_end(self, cursor: str | None) -> bool:
        """Whether a reader at ``cursor`` already has this ended stream's last event: nothing
        will follow (SSE answers 204, which tells EventSource to stop; a socket says ``caught_up``)."""
        if self.status == "running" or not cursor:
            return False
        parsed = parse_event_id(cursor)
        return parsed is not None and parsed[0] == self.epoch and parsed[1] >= self.last_seq


StopHandler = Callable[[str], None]

#: Aliases the memory log keeps (one per chat a client named); the oldest go first.
MAX_ALIASES = 10_000

#: Writes one event to one reader's connection (an SSE chunk, a WebSocket frame).
Deliver = Callable[[Entry], Coroutine[Any, Any, None]]


class Parked:
    """A reader waiting for its stream's next event, with a way to be written to directly.

    While a reader is parked and caught up, each new event is written to it by the
    producer, in the producer's own step (:meth:`MemoryStreamLog.park`): one task step per
    token instead of the producer's and the reader's. The reader's task wakes only when
    the park ends; the fields say why and where its cursor now is.
    """

    __slots__ = ("deliver", "delivered", "error", "future", "pending", "quiet", "terminal", "through")

    def __init__(self, through: int, deliver: Deliver, future: asyncio.Future[None] | None) -> None:
        self.deliver = deliver
        self.future = future
        self.through = through  # the newest seq the reader has (its cursor)
        self.delivered = 0  # events written to it directly
        self.pending: Awaitable[None] | None = None  # a write that had to wait: the reader awaits the rest
        self.error: Exception | None = None  # a write that failed: the reader raises it in its own task
        self.terminal = False  # the stream's last event was written
        self.quiet = False  # ended by the heartbeat: nothing came for an interval

    def end(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)
        self.future = None


class LogUnavailable(APIError):
    """The log's backing store cannot be reached; producers end with ``log_unavailable``.

    ``str()`` is the cause, for our logs; the client is told only that the log is unreachable."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            503, "log_unavailable", "the stream log is unreachable; try again shortly", headers={"Retry-After": "2"}
        )
        self.detail = detail

    def __str__(self) -> str:
        return self.detail or self.message


class Fenced(Exception):
    """This producer lost its lease: another party ended the stream. Stop writing."""


class StreamLog(Protocol):
    """Where events live. Implementations: :class:`MemoryStreamLog`, ``streams.redis.RedisStreamLog``.

    ``request_stop`` asks whichever instance produces a stream to stop it; each
    instance registers the handler that cancels its own producers with
    ``on_stop_request``. ``wait`` is also where a reader notices a producer that
    died (its lease expired) and ends the stream with ``error producer_lost``.
    """

    async def create(self, stream_id: str, owner: str, block_type: str) -> StreamInfo: ...

    async def append(self, stream_id: str, event_type: str, data: dict[str, Any], fold: Fold | None = None) -> Entry:
        """Add an event and fold it into the stream's state by ``fold`` (None: a core event's own,
        :data:`CORE_FOLDS`; a block's events come with the block's ``folds``)."""
        ...

    async def read(self, stream_id: str, after_seq: int, limit: int) -> list[Entry]: ...

    async def wait(self, stream_id: str, after_seq: int, timeout: float) -> list[Entry]: ...

    async def info(self, stream_id: str) -> StreamInfo | None: ...

    async def snapshot(self, stream_id: str) -> tuple[dict[str, Any], int]: ...

    async def find_by_epoch(self, epoch: str) -> str | None: ...

    async def set_alias(self, owner: str, name: str, stream_id: str) -> None:
        """A client's own name for its newest stream (the AI SDK's chat id), per owner; kept
        about as long as a stream is."""
        ...

    async def find_alias(self, owner: str, name: str) -> str | None: ...

    async def put_private(self, stream_id: str, name: str, value: str) -> None:
        """Keep a record of the stream that no reader is sent (a quiz's answer key), as long as
        the stream is kept."""
        ...

    async def get_private(self, stream_id: str, name: str) -> str | None: ...

    async def claim_private(self, stream_id: str, name: str, value: str) -> bool:
        """Set ``name`` unless it is set already, atomically: True when this call set it."""
        ...

    async def healthy(self) -> bool: ...

    async def request_stop(self, stream_id: str) -> None: ...

    async def touch_reader(self, stream_id: str, ttl_s: float) -> None:
        """Record that a reader on this instance follows the stream (for the detach grace)."""
        ...

    async def has_readers(self, stream_id: str) -> bool:
        """Whether a reader on any *other* instance followed the stream within its ttl."""
        ...

    def on_stop_request(self, handler: StopHandler) -> None: ...

    async def close(self) -> None: ...


class _MemoryStream:
    __slots__ = (
        "active_at",
        "entries",
        "epoch",
        "expires_at",
        "info_fields",
        "last_seq",
        "loop",
        "parked",
        "state",
        "stream_id",
        "taken_seq",
        "waiters",
    )

    def __init__(self, stream_id: str, epoch: str, fields: dict[str, Any]) -> None:
        self.loop = asyncio.get_running_loop()  # looked up once: a reader parks a future per event
        self.stream_id = stream_id
        self.epoch = epoch
        # A list while the stream is shorter than its history (most are: an empty deque
        # costs 600 bytes), a bounded deque from the event that would overflow it.
        self.entries: list[Entry] | deque[Entry] = []
        self.state = StreamState()
        # Readers waiting for the next append; the shared empty tuple while there are none, so
        # that an append (which looks on every token) reads no list of this stream's own.
        self.waiters: list[asyncio.Future[None]] | tuple[()] = ()
        self.parked: list[Parked] = []  # caught-up readers the producer writes to directly
        self.info_fields = fields
        self.last_seq = 0
        self.taken_seq = 0  # the newest event a read has handed out: it and all before it are final
        self.expires_at: float | None = None
        self.active_at = time.monotonic()  # last append or heartbeat wake-up

    def hand_out(self, seq: int) -> None:
        """A read, a cursor or a snapshot names events up to ``seq``: they are final, never merged into."""
        if seq > self.taken_seq:
            self.taken_seq = min(seq, self.last_seq)


class MemoryStreamLog:
    """The embedded log: one process, bounded history, retention after the end.

    Tokens coalesce here: a token event that no read, cursor or snapshot has handed out
    yet absorbs the next token, up to ``coalesce_max_tokens``. Tokens that come faster
    than readers take them go out as fewer, larger events, with no wait for more: a
    reader that keeps up gets every token as its own event.

    The per-event path does no timer work: a waiting reader parks a future on its
    stream, which the next append resolves, and one heartbeat task wakes the readers
    of streams that went quiet (their empty read is a heartbeat). Finished streams
    expire in end order, from a queue.
    """

    def __init__(self, history_size: int, retention_s: float, coalesce_max_tokens: int = 32) -> None:
        self._history = history_size
        self._retention = retention_s
        self._coalesce = coalesce_max_tokens
        self._streams: dict[str, _MemoryStream] = {}
        self._epochs: dict[str, str] = {}
        self._expiring: deque[tuple[float, str]] = deque()  # (expires_at, stream_id), in end order
        self._stop_handler: StopHandler | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._aliases: OrderedDict[tuple[str, str], str] = OrderedDict()  # bounded: the newest win
        self._private: dict[str, dict[str, str]] = {}  # few streams have any: kept beside, not on each

    async def create(self, stream_id: str, owner: str, block_type: str) -> StreamInfo:
        self._expire()
        epoch = secrets.token_hex(4)  # new log, new epoch: old cursors get a reset
        fields = {"owner": owner, "block_type": block_type, "created_at": time.time(), "ended_at": None}
        self._streams[stream_id] = _MemoryStream(stream_id, epoch, fields)
        self._epochs[epoch] = stream_id
        info = await self.info(stream_id)
        assert info is not None
        return info

    async def append(self, stream_id: str, event_type: str, data: dict[str, Any], fold: Fold | None = None) -> Entry:
        stream = self._streams.get(stream_id)
        if stream is None:  # expired, or the log closed under a producer that is still ending
            raise Fenced(f"stream {stream_id} is no longer in the log")
        if event_type == "token" and stream.last_seq > stream.taken_seq:  # the last entry is not handed out
            last = stream.entries[-1]
            if last.type == "token" and last.absorb(data, self._coalesce):
                stream.state.apply(Fold.TEXT, data)
                stream.active_at = time.monotonic()
                return last  # its readers were woken when it was appended
        stream.last_seq += 1
        entry = Entry(stream_id, stream.epoch, stream.last_seq, event_type, data)
        entries = stream.entries
        entries.append(entry)
        if len(entries) > self._history and type(entries) is list:
            stream.entries = deque(entries, maxlen=self._history)  # the oldest falls out
        stream.state.apply(CORE_FOLDS.get(event_type, Fold.NOTHING) if fold is None else fold, data)
        stream.active_at = now = time.monotonic()
        if event_type in TERMINAL:
            stream.info_fields["ended_at"] = time.time()
            stream.expires_at = now + self._retention
            self._expiring.append((stream.expires_at, stream_id))
        if stream.parked:
            self._deliver(stream, entry)
        self._wake(stream)
        return entry

    @staticmethod
    def _deliver(stream: _MemoryStream, entry: Entry) -> None:
        """Write ``entry`` to every parked reader, in this (the producer's) step. A write that
        would wait or that fails ends that reader's park: its task finishes the write, or
        raises the failure, and tails the log from its cursor again."""
        stream.hand_out(entry.seq)  # taken: nothing merges into it any more
        terminal = entry.type in TERMINAL
        ended = False
        for reader in stream.parked:
            try:
                step = reader.deliver(entry)
                done, _, waits_on = run_until_suspended(step)
            except Exception as exc:
                reader.error = exc
                reader.end()
                ended = True
                continue
            reader.through = entry.seq
            reader.delivered += 1
            if not done:
                reader.pending = Resumed(step, waits_on)
            if not done or terminal:
                reader.terminal = terminal
                reader.end()
                ended = True
        if ended:
            stream.parked = [reader for reader in stream.parked if reader.future is not None]

    @staticmethod
    def _wake(stream: _MemoryStream) -> None:
        waiters = stream.waiters
        if waiters:
            stream.waiters = ()
            for waiter in waiters:
                if not waiter.done():  # a reader cancelled meanwhile
                    waiter.set_result(None)

    @classmethod
    def _release(cls, stream: _MemoryStream, quiet: bool = False) -> None:
        """Wake every reader of ``stream``, parked ones too: a quiet interval, or the stream is gone."""
        cls._wake(stream)
        parked, stream.parked = stream.parked, []
        for reader in parked:
            reader.quiet = quiet
            reader.end()

    async def _beat(self, interval: float) -> None:
        """Every quarter of ``interval``, wake the readers of every stream quiet for ``interval``:
        a quiet reader hears something 1.0-1.25 x ``interval`` after the last event (or beat)."""
        while True:
            await asyncio.sleep(interval / 4)
            now = time.monotonic()
            quiet_since = now - interval
            for stream in self._streams.values():
                if stream.active_at <= quiet_since:
                    stream.active_at = now
                    self._release(stream, quiet=True)

    async def read(self, stream_id: str, after_seq: int, limit: int) -> list[Entry]:
        stream = self._streams.get(stream_id)
        return [] if stream is None else self._take(stream, after_seq, limit)

    @staticmethod
    def _take(stream: _MemoryStream, after_seq: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries after ``after_seq``, handed out (read's and wait's one body)."""
        stream.hand_out(after_seq)
        if after_seq >= stream.last_seq:
            return []
        entries = stream.entries
        first = entries[0].seq
        start = max(after_seq + 1 - first, 0)
        if start == 0 and after_seq + 1 >= first and limit >= len(entries):
            taken = list(entries)
        else:
            taken = [entries[i] for i in range(start, min(start + limit, len(entries)))]
        if taken:
            stream.hand_out(taken[-1].seq)
        return taken

    async def wait(self, stream_id: str, after_seq: int, timeout: float) -> list[Entry]:
        stream = self._streams.get(stream_id)
        if stream is None:
            return []
        if stream.last_seq <= after_seq:
            stream.hand_out(after_seq)  # before parking: what comes next is a new event for this reader
            if self._heartbeat is None:
                self._heartbeat = asyncio.create_task(self._beat(timeout), name="memory-log-heartbeat")
            waiter = stream.loop.create_future()
            if isinstance(stream.waiters, list):
                stream.waiters.append(waiter)
            else:
                stream.waiters = [waiter]
            await waiter  # an append, or the heartbeat after ``timeout`` of quiet
            if self._streams.get(stream_id) is not stream:
                return []  # dropped (expired, or the log closed) meanwhile
        return self._take(stream, after_seq, self._history)

    async def park(self, stream_id: str, after_seq: int, deliver: Deliver, timeout: float) -> Parked:
        """Wait, caught up at ``after_seq``, while the producer writes each new event to this
        reader with ``deliver`` in its own step. Returns when that can no longer go on: the
        stream ended or went quiet for ``timeout`` (a heartbeat is due), a write had to
        wait or failed, the stream is gone, or events came before the reader parked."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.last_seq > after_seq:
            return Parked(after_seq, deliver, None)  # gone, or read again first
        stream.hand_out(after_seq)
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(timeout), name="memory-log-heartbeat")
        future = stream.loop.create_future()
        reader = Parked(after_seq, deliver, future)
        stream.parked.append(reader)
        try:
            await future
        finally:
            if reader.future is not None:  # cancelled while parked: the producer must not write to it
                reader.future = None
                stream.parked = [other for other in stream.parked if other is not reader]
        return reader

    async def info(self, stream_id: str) -> StreamInfo | None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        if stream.expires_at is not None and stream.expires_at < time.monotonic():
            self._drop(stream_id)
            return None
        fields = stream.info_fields
        return StreamInfo(
            stream_id=stream_id,
            epoch=stream.epoch,
            owner=fields["owner"],
            block_type=fields["block_type"],
            created_at=fields["created_at"],
            first_seq=stream.entries[0].seq if stream.entries else 1,
            last_seq=stream.last_seq,
            status=stream.state.status,
            ended_at=fields["ended_at"],
        )

    async def snapshot(self, stream_id: str) -> tuple[dict[str, Any], int]:
        stream = self._streams[stream_id]
        stream.hand_out(stream.last_seq)  # the snapshot covers it
        return stream.state.snapshot(), stream.last_seq

    async def find_by_epoch(self, epoch: str) -> str | None:
        return self._epochs.get(epoch)

    async def set_alias(self, owner: str, name: str, stream_id: str) -> None:
        aliases = self._aliases
        aliases[(owner, name)] = stream_id
        aliases.move_to_end((owner, name))
        while len(aliases) > MAX_ALIASES:
            aliases.popitem(last=False)

    async def find_alias(self, owner: str, name: str) -> str | None:
        stream_id = self._aliases.get((owner, name))
        return stream_id if stream_id in self._streams else None

    async def put_private(self, stream_id: str, name: str, value: str) -> None:
        if stream_id in self._streams:
            self._private.setdefault(stream_id, {})[name] = value

    async def get_private(self, stream_id: str, name: str) -> str | None:
        return self._private.get(stream_id, {}).get(name) if stream_id in self._streams else None

    async def claim_private(self, stream_id: str, name: str, value: str) -> bool:
        if stream_id not in self._streams:
            return False
        records = self._private.setdefault(stream_id, {})
        if name in records:
            return False
        records[name] = value
        return True

    async def healthy(self) -> bool:
        return True

    async def request_stop(self, stream_id: str) -> None:
        if self._stop_handler is not None:
            self._stop_handler(stream_id)

    def on_stop_request(self, handler: StopHandler) -> None:
        self._stop_handler = handler

    async def touch_reader(self, stream_id: str, ttl_s: float) -> None:
        return None  # one process: the manager counts its readers itself

    async def has_readers(self, stream_id: str) -> bool:
        return False

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        for stream in self._streams.values():
            self._release(stream)  # waiting readers find their stream gone
        self._streams.clear()
        self._epochs.clear()
        self._expiring.clear()

    def _expire(self) -> None:
        now, expiring = time.monotonic(), self._expiring
        while expiring and expiring[0][0] < now:
            expires_at, stream_id = expiring.popleft()
            stream = self._streams.get(stream_id)
            if stream is not None and stream.expires_at == expires_at:
                self._drop(stream_id)

    def _drop(self, stream_id: str) -> None:
        stream = self._streams.pop(stream_id, None)
        self._private.pop(stream_id, None)
        if stream is not None:
            self._epochs.pop(stream.epoch, None)
            self._release(stream)  # its readers find it gone

    def __len__(self) -> int:
        return len(self._streams)
