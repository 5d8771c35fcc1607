"""The stream manager: producers that outlive connections, readers that tail the log.

Starting a stream creates a log and a **producer task** that runs the engine
and appends every event. The task belongs to no connection: a reader that
disconnects does not stop it (a resume needs it running); an explicit
``stop()`` does, at once; and so does a detach grace period with no reader.

Readers ``follow()`` a stream from a cursor (``Last-Event-ID`` or ``?after=``):

- no cursor: everything from the start, or one ``snapshot`` if that is long;
- a cursor of this stream's epoch within history: exactly the missed events;
- a cursor more than ``STREAM_SNAPSHOT_AFTER`` events behind: one ``snapshot``;
- a cursor of another epoch, or older than the retained history: a ``reset``
  and a ``snapshot``, never a silent gap.

``snapshot`` carries the id of the last event it covers, so the reader's cursor
moves on from there; ``reset`` carries none (a reader cut off between the two keeps
its old cursor and gets both again).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from quart.globals import _cv_app, _cv_request, _cv_websocket

from ..config import Settings
from ..engine import BlockRequest, Engine
from ..engine.blocks import Turn
from ..engine.runner import StreamingDisabled
from ..errors import APIError
from ..limits import Lease, Limits
from ..metrics import Metrics
from ..providers.base import Usage
from .events import PRIVATE_PREFIX, TERMINAL, Entry, Fold, parse_event_id
from .log import Deliver, Fenced, LogUnavailable, Parked, StreamInfo, StreamLog
from .sharing import ALIAS_OWNER, GENERATION_OWNER, Found, MirrorRun, generation_key
from .threads import earlier_turns

#: How long a shared generation nobody reads any more runs on, for a request that just joined it.
UNREAD_GENERATION_S = 0.5

#: The private record of a mirror naming the shared generation it reads.
SOURCE_RECORD = "source"

#: How long a stop waits for a producer on another instance to log its end.
STOP_WAIT_S = 5.0

log = logging.getLogger(__name__)


class StreamNotFound(APIError):
    """No such stream (or not yours): the API answers 404 either way."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(404, "stream_not_found", "no such stream", "stream_id")
        self.stream_id = stream_id


#: Most entries one read takes: a reader catching up gets its first events after one page,
#: not after the whole backlog was fetched and framed.
READ_PAGE = 256

#: Log latency is observed for a stream's first append and every 16th after it, the gap
#: between tokens for every 16th token (a histogram observe costs about 1 us: a token's 5%).
LOG_LATENCY_SAMPLE_MASK = 15


class Producing(Protocol):
    """What a producer runs: an engine :class:`~quartapp.engine.Run`, or a :class:`MirrorRun`."""

    request: BlockRequest

    def events(self) -> AsyncGenerator[tuple[str, dict[str, Any]], None]: ...

    def usage(self) -> Usage: ...

    def done_data(self, status: str, reason: str) -> dict[str, object]: ...

    def error_data(self, code: str, message: str, status: str, retryable: bool) -> dict[str, object]: ...


@dataclass(eq=False, slots=True)  # one per running stream: no instance __dict__
class _Producer:
    stream_id: str
    run: Producing
    task: asyncio.Task[None] | None = None
    end_reason: tuple[str, str] | None = None  # (status, reason) when ended from outside
    readers: int = 0
    grace: asyncio.TimerHandle | None = None
    cancelled_at: float | None = None
    lease: Lease | None = None
    #: A shared generation's key (its own stream), or the generation a requester's mirror reads.
    key: str | None = None
    source: str | None = None
    #: The producer task's context (detached from the request): its timers run in it too.
    context: contextvars.Context | None = None


def _producer_context(stream_id: str, **fields: str) -> contextvars.Context:
    """The context a producer task runs in: a copy of the caller's (its ``request_id``, and any
    context variables of the app's own, such as a tracing span), plus the ``stream_id`` (and
    ``fields``), minus Quart's request, websocket and app contexts. The producer outlives its
    request; holding them, every open stream kept its request, session and ``g`` alive (about
    1.5 KB each)."""
    context = contextvars.copy_context()
    context.run(_detach_from_request, stream_id, fields)
    return context


def _detach_from_request(stream_id: str, fields: dict[str, str]) -> None:
    for var in (_cv_request, _cv_websocket, _cv_app):
        var.set(None)  # type: ignore[arg-type]  # has_request_context() and friends: False
    structlog.contextvars.bind_contextvars(stream_id=stream_id, **fields)


def new_stream_id() -> str:
    """128 random bits, URL-safe: unguessable, so an id is no way into someone else's stream."""
    return secrets.token_urlsafe(16)


class StreamManager:
    def __init__(self, settings: Settings, engine: Engine, stream_log: StreamLog, limits: Limits | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.log = stream_log
        self.limits = limits
        self._producers: dict[str, _Producer] = {}
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()
        self._generations: dict[str, str] = {}  # key -> stream id of a generation running here
        self._finding = asyncio.Lock()  # one lookup-or-create at a time: 30 at once make one generation
        self.metrics = Metrics(lambda: len(self._producers))
        #: A log that can write events to this process's readers in the producer's step
        #: (the memory log) has ``park``; readers of any other log tail it.
        self._park: Callable[[str, int, Deliver, float], Awaitable[Parked]] | None = getattr(stream_log, "park", None)
        stream_log.on_stop_request(self._stop_requested)

    def _stop_requested(self, stream_id: str) -> None:
        """Another instance (or this one) asked to stop a stream; act if we produce it."""
        producer = self._producers.get(stream_id)
        if producer is not None:
            self._cancel(producer, "stopped", "stop_requested")

    # -- producing ---------------------------------------------------------

    async def start(self, request: BlockRequest, owner: str = "", address: str | None = None) -> StreamInfo:
        """Start producing. With limits: raises ``LimitExceeded`` before any model call when the
        owner (or its ``address``, for an anonymous caller) is over its daily budget or already
        runs its most concurrent streams. With ``SHARED_GENERATIONS`` the stream mirrors the
        generation identical requests share (:mod:`quartapp.streams.sharing`)."""
        stream_id = new_stream_id()
        # a thread is its own, and so is a teacher's quiz with its answer key
        shared = self.settings.SHARED_GENERATIONS and request.parent_stream_id is None and not request.answer_key
        if shared and not self.engine.streaming_enabled:
            raise StreamingDisabled()
        run: Producing | None = None if shared else self.engine.start(request, stream_id)
        lease = await self.limits.admit(owner, address) if self.limits is not None else None
        source = None
        try:
            if run is None:
                source, generation_owner, found = await self._generation_for(request, stream_id)
                self.metrics.shared.labels(found).inc()
                run = MirrorRun(request, stream_id, self.follow(source, None, generation_owner), found)
            info = await self.log.create(stream_id, owner, request.block_type)
            if source is not None:  # its private records (a quiz's answer key) are the generation's
                await self.log.put_private(stream_id, SOURCE_RECORD, source)
        except BaseException:
            if lease is not None and self.limits is not None:
                await self.limits.release(lease)
            raise
        self._launch(_Producer(stream_id, run, lease=lease, source=source))
        return info

    def _launch(self, producer: _Producer, for_stream: str | None = None) -> None:
        """Run ``producer``; a shared generation's logs name the stream it was made ``for_stream``."""
        self._producers[producer.stream_id] = producer
        context = (
            _producer_context(for_stream, generation_id=producer.stream_id)
            if for_stream is not None
            else _producer_context(producer.stream_id)
        )
        name = f"stream-{producer.stream_id}"
        producer.context = context
        producer.task = asyncio.create_task(self._produce(producer), name=name, context=context)
        self._arm_grace(producer)

    async def _generation_for(self, request: BlockRequest, for_stream: str) -> tuple[str, str, Found]:
        """The stream of the generation ``request`` shares: (stream id, its owner, how it was found).
        One running here or on another instance, one that completed within ``SHARED_CACHE_TTL_S``,
        else a new one (only a complete generation is ever served again)."""
        key = generation_key(request, self.engine.provider.info)
        owner = GENERATION_OWNER + key
        async with self._finding:
            running = self._generations.get(key)
            if running is not None and running in self._producers:
                return running, owner, "running"
            found = await self.log.find_alias(ALIAS_OWNER, key)
            info = await self.log.info(found) if found else None
            if info is not None and info.owner == owner:
                if info.status == "running":
                    return info.stream_id, owner, "running"  # produced by another instance: tailed through the log
                ttl = min(self.settings.SHARED_CACHE_TTL_S, self.settings.STREAM_RETENTION_S)
                if info.status == "complete" and info.ended_at is not None and time.time() - info.ended_at <= ttl:
                    return info.stream_id, owner, "complete"
            stream_id = new_stream_id()
            run = self.engine.start(request, stream_id)
            await self.log.create(stream_id, owner, request.block_type)
            await self.log.set_alias(ALIAS_OWNER, key, stream_id)
            self._generations[key] = stream_id
            self._launch(_Producer(stream_id, run, key=key), for_stream)
            return stream_id, owner, "new"

    def _unfollow(self, source: str) -> None:
        """A requester's mirror ended: with nobody else reading it a moment later (a request that
        just joined has had time to start reading), the generation stops."""
        generation = self._producers.get(source)
        if generation is not None and generation.readers == 0:
            asyncio.get_running_loop().call_later(UNREAD_GENERATION_S, self._stop_unread, generation)

    def _stop_unread(self, generation: _Producer) -> None:
        if generation.readers or generation.stream_id not in self._producers:
            return
        if generation.key is not None and self._generations.get(generation.key) == generation.stream_id:
            del self._generations[generation.key]  # a newcomer starts afresh, never joins a stopping one
        self._cancel(generation, "stopped", "no_requester")

    async def _produce(self, producer: _Producer) -> None:
        run, stream_id = producer.run, producer.stream_id
        metrics = self.metrics
        metrics.started.labels(run.request.block_type).inc()
        started = last_token = time.perf_counter()
        first = True
        folds, nothing, text = run.request.folds, Fold.NOTHING, Fold.TEXT
        try:
            async with asyncio.timeout(self.settings.STREAM_DEADLINE_S):
                async with contextlib.aclosing(run.events()) as events:
                    appended = tokens = 0
                    async for event_type, data in events:
                        if event_type[0] == PRIVATE_PREFIX:  # kept for the server, never sent
                            await self.log.put_private(
                                stream_id, f"{event_type}:{data.get('index', '')}", json.dumps(data)
                            )
                            continue
                        before = time.perf_counter()
                        fold = folds.get(event_type, nothing)
                        await self.log.append(stream_id, event_type, data, fold)
                        if not appended & LOG_LATENCY_SAMPLE_MASK:  # a histogram observe is ~2 us: sample it
                            metrics.log_latency.observe(time.perf_counter() - before)
                        appended += 1
                        if fold is text:
                            if first:
                                metrics.ttft.observe(before - started)
                                first = False
                            elif not tokens & LOG_LATENCY_SAMPLE_MASK:
                                metrics.gap.observe(before - last_token)
                            tokens += 1
                            last_token = before
                        elif event_type == "error":
                            metrics.errors.labels(str(data["code"])).inc()
        except TimeoutError:
            metrics.errors.labels("stream_deadline").inc()
            await self.log.append(
                stream_id,
                "error",
                run.error_data(
                    "stream_deadline",
                    f"the stream reached its {self.settings.STREAM_DEADLINE_S:g} s deadline",
                    "interrupted",
                    retryable=False,
                ),
            )
        except Fenced:
            log.warning("stream %s: producer lost its lease; another party ended the stream", stream_id)
        except LogUnavailable as exc:
            log.error("stream %s: stream log unavailable: %s", stream_id, exc)
        except asyncio.CancelledError:
            if producer.end_reason is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # a stop we asked for: finish the log, then end normally
            status, reason = producer.end_reason
            await self._append_end(stream_id, "done", run.done_data(status, reason))
        except Exception:
            log.exception("stream %s producer failed", stream_id)
            await self._append_end(
                stream_id, "error", run.error_data("internal_error", "the stream failed", "failed", True)
            )
        finally:
            if producer.grace is not None:
                producer.grace.cancel()
            self._producers.pop(stream_id, None)
            if producer.key is not None and self._generations.get(producer.key) == stream_id:
                del self._generations[producer.key]
            if producer.source is not None:
                self._unfollow(producer.source)
            if producer.lease is not None and self.limits is not None:
                usage = run.usage()
                producer.lease.tokens = usage.input_tokens + usage.output_tokens
                await self.limits.release(producer.lease)
            info = await self._info_quietly(stream_id)
            metrics.ended.labels(info.status if info else "unknown").inc()

    async def _info_quietly(self, stream_id: str) -> StreamInfo | None:
        try:
            return await self.log.info(stream_id)
        except LogUnavailable:
            return None

    async def _append_end(self, stream_id: str, event_type: str, data: dict[str, object]) -> None:
        """The terminal event, when the log can still take it (else readers learn of it as producer_lost)."""
        try:
            await self.log.append(stream_id, event_type, data)
        except (Fenced, LogUnavailable) as exc:
            log.warning("stream %s: could not log its end: %s", stream_id, exc)

    def _arm_grace(self, producer: _Producer) -> None:
        if producer.grace is not None:
            producer.grace.cancel()
        loop = asyncio.get_running_loop()
        # In the producer's context, not the caller's: a timer keeps its context until its time,
        # even cancelled, and the grace armed as a stream starts (cancelled when its reader comes)
        # held the starting request, its body and ``g`` for the whole grace period.
        producer.grace = loop.call_later(
            self.settings.STREAM_DETACH_GRACE_S, self._abandon, producer, context=producer.context
        )

    def _abandon(self, producer: _Producer) -> None:
        if producer.readers == 0:
            task = asyncio.create_task(self._abandon_unless_read_elsewhere(producer))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _abandon_unless_read_elsewhere(self, producer: _Producer) -> None:
        if producer.readers or producer.stream_id not in self._producers:
            return
        if await self.log.has_readers(producer.stream_id):
            self._arm_grace(producer)  # read through another instance: look again later
            return
        log.info(
            "stream %s abandoned: no reader for %ss",
            producer.stream_id,
            self.settings.STREAM_DETACH_GRACE_S,
            extra={"stream_id": producer.stream_id, "reason": "abandoned"},
        )
        self._cancel(producer, "interrupted", "abandoned")

    def _cancel(self, producer: _Producer, status: str, reason: str) -> None:
        if producer.end_reason is None and producer.task is not None and not producer.task.done():
            producer.end_reason = (status, reason)
            producer.task.cancel()

    async def stop(self, stream_id: str, owner: str = "") -> StreamInfo:
        """End generation at once; the stream ends with ``done`` status ``stopped``, text kept."""
        info = await self._owned(stream_id, owner)
        producer = self._producers.get(stream_id)
        if producer is not None and producer.task is not None:
            self._cancel(producer, "stopped", "stop_requested")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(producer.task)
        elif info.status == "running":
            # produced on another instance: ask it, then wait (bounded) for the end to be logged
            await self.log.request_stop(stream_id)
            after = info.last_seq
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_WAIT_S):
                    while True:
                        entries = await self.log.wait(stream_id, after, STOP_WAIT_S)
                        if entries:
                            after = entries[-1].seq
                            if entries[-1].type in TERMINAL:
                                break
        return await self.log.info(stream_id) or info

    async def thread(self, parent_stream_id: str, owner: str, block_type: str) -> tuple[Turn, ...]:
        """The earlier turns a follow-up of ``parent_stream_id`` builds on. The parent must be the
        owner's, of the same block, and finished: a follow-up while the turn before still runs is
        refused (``409 parent_running``; stop it or wait for its end), so turns never interleave."""
        try:
            info = await self._owned(parent_stream_id, owner)
        except StreamNotFound:
            raise APIError(404, "stream_not_found", "no such stream to follow up", "parent_stream_id") from None
        if info.block_type != block_type:
            raise APIError(422, "parent_block_mismatch", f"that stream is a {info.block_type}", "parent_stream_id")
        if info.status == "running":
            raise APIError(
                409,
                "parent_running",
                "the turn before is still streaming; stop it or wait for it to end",
                "parent_stream_id",
            )
        return await earlier_turns(self.log, info, self.settings.FOLLOW_UP_CONTEXT_TOKENS)

    async def private_record(self, stream_id: str, owner: str, name: str) -> str | None:
        """A private record of the owner's stream (a quiz question's answer key), or of the
        shared generation it mirrors; None when there is none (yet)."""
        await self._owned(stream_id, owner)
        value = await self.log.get_private(stream_id, name)
        if value is None:
            source = await self.log.get_private(stream_id, SOURCE_RECORD)
            value = await self.log.get_private(source, name) if source else None
        return value

    async def claim(self, stream_id: str, owner: str, name: str, value: str) -> bool:
        """Set a private record of the owner's stream once (an answer): False when it was set."""
        await self._owned(stream_id, owner)
        return await self.log.claim_private(stream_id, name, value)

    async def info(self, stream_id: str, owner: str = "") -> StreamInfo:
        return await self._owned(stream_id, owner)

    async def _owned(self, stream_id: str, owner: str) -> StreamInfo:
        info = await self.log.info(stream_id)
        if info is None or info.owner != owner:
            raise StreamNotFound(stream_id)
        return info

    @property
    def active(self) -> int:
        return len(self._producers)

    # -- reading -----------------------------------------------------------

    async def follow(
        self,
        stream_id: str,
        cursor: str | None,
        owner: str = "",
        deliver: Deliver | None = None,
        snapshot_first: bool = False,
    ) -> AsyncGenerator[list[Entry], None]:
        """Yield batches of entries from ``cursor`` on; an empty batch means a quiet heartbeat interval.

        Ends after the terminal event (``done`` or ``error``). With ``deliver`` (how to write
        one event to this reader) and a log that supports it, a reader that has caught up
        is written to by the producer directly and this generator yields only what the
        reader must send itself: a backlog, a replay, a heartbeat. ``snapshot_first``: with no
        cursor, start from one ``snapshot`` even when the stream is short (a client that
        replaces what it had, such as the AI SDK's resume).
        """
        info = await self._owned(stream_id, owner)
        producer = self._producers.get(stream_id)
        if producer is not None:
            producer.readers += 1
            if producer.grace is not None:
                producer.grace.cancel()
                producer.grace = None
        remote = producer is None and info.status == "running"
        grace = self.settings.STREAM_DETACH_GRACE_S
        touched = 0.0
        after = 0
        park = self._park if deliver is not None and not remote else None
        try:
            if snapshot_first and not cursor:
                after, first = await self._snapshot(info, None)
            else:
                after, first = await self._position(info, cursor)
            if cursor:
                self.metrics.resumes.labels(first[0].type if first else "replay").inc()
            if first:
                yield first
                if first[-1].type in TERMINAL:
                    return
            heartbeat = self.settings.HEARTBEAT_INTERVAL_S
            limit = min(self.settings.STREAM_HISTORY_SIZE, READ_PAGE)
            while True:
                if remote and time.monotonic() - touched > grace / 3:
                    touched = time.monotonic()
                    await self.log.touch_reader(stream_id, grace + heartbeat)
                entries = await self.log.read(stream_id, after, limit)
                if not entries and park is not None:
                    assert deliver is not None
                    parked = await park(stream_id, after, deliver, heartbeat)
                    after = parked.through
                    if parked.pending is not None:
                        await parked.pending  # a write that had to wait: finish it here
                    if parked.error is not None:
                        raise parked.error
                    if parked.terminal:
                        return
                    if parked.quiet:
                        yield []
                    elif not parked.delivered and await self.log.info(stream_id) is None:
                        return  # expired under us
                    continue
                if not entries:
                    entries = await self.log.wait(stream_id, after, heartbeat)
                    if not entries:
                        if await self.log.info(stream_id) is None:
                            return  # expired under us
                        yield []
                        continue
                if entries[0].seq != after + 1:
                    # a hole in the log (Redis lost events and the stream was re-based):
                    # never a silent gap, the reader gets a reset and the state instead
                    fresh = await self.log.info(stream_id)
                    if fresh is None:
                        return
                    after, entries = await self._snapshot(
                        fresh, ("epoch_mismatch", "the stream's log lost events; the state below replaces yours")
                    )
                    yield entries
                    if entries[-1].type in TERMINAL:
                        return
                    continue
                after = entries[-1].seq
                yield entries
                if entries[-1].type in TERMINAL:
                    return
        except LogUnavailable as exc:
            log.warning("stream %s: reader ended, log unavailable: %s", stream_id, exc)
            data: dict[str, object] = {
                "code": "log_unavailable",
                "message": "the stream log is unreachable; resume in a moment",
                "status": "interrupted",
                "retryable": True,
            }
            yield [Entry(stream_id, info.epoch, after, "error", data)]  # the cursor stays where it was
        finally:
            if producer is not None:
                producer.readers -= 1
                if producer.readers == 0 and stream_id in self._producers:
                    self._arm_grace(producer)

    async def _position(self, info: StreamInfo, cursor: str | None) -> tuple[int, list[Entry]]:
        """Where a reader starts: the seq to read after, and any synthetic events to send first."""
        behind_limit = self.settings.STREAM_SNAPSHOT_AFTER
        if cursor is None or cursor == "":
            if info.last_seq <= behind_limit and info.first_seq == 1:
                return 0, []
            return await self._snapshot(info, None)
        parsed = parse_event_id(cursor)
        if parsed is None:
            return await self._snapshot(info, ("unknown_cursor", f"{cursor[:64]!r} is not an event id of this stream"))
        epoch, seq = parsed
        if epoch != info.epoch:
            return await self._snapshot(
                info, ("epoch_mismatch", "the stream's log was recreated; the state below replaces yours")
            )
        if seq > info.last_seq:
            return await self._snapshot(info, ("unknown_cursor", "the cursor is ahead of the stream"))
        if seq < info.first_seq - 1:
            return await self._snapshot(
                info, ("history_trimmed", "events after your cursor are no longer kept; the state below replaces yours")
            )
        if info.last_seq - seq > behind_limit:
            return await self._snapshot(info, None)
        return seq, []

    async def _snapshot(self, info: StreamInfo, reset: tuple[str, str] | None) -> tuple[int, list[Entry]]:
        state, through = await self.log.snapshot(info.stream_id)
        # A finished stream: the snapshot covers up to the terminal event, which follows
        # it with its own id, so the reader sees how the stream ended.
        tail = await self.log.read(info.stream_id, through - 1, 1) if info.status != "running" else []
        terminal = tail[-1] if tail and tail[-1].type in TERMINAL else None
        covered = through - 1 if terminal is not None else through
        entries = []
        if reset is not None:
            reset_data: dict[str, object] = {"reason": reset[0], "message": reset[1]}
            entries.append(Entry(info.stream_id, info.epoch, covered, "reset", reset_data))
        entries.append(Entry(info.stream_id, info.epoch, covered, "snapshot", state))
        if terminal is not None:
            entries.append(terminal)
        return through, entries

    # -- lifecycle ---------------------------------------------------------

    async def shutdown(self) -> None:
        """Tell every reader the server is going away, end producers, keep their text. Idempotent."""
        if self._closing:
            return
        self._closing = True
        producers = list(self._producers.values())
        for producer in producers:
            with contextlib.suppress(Fenced, LogUnavailable):  # readers then learn of it as producer_lost
                await self.log.append(
                    producer.stream_id,
                    "shutdown",
                    {"message": "the server is restarting; reconnect to resume", "retry_after_ms": 1000},
                )
            self._cancel(producer, "interrupted", "shutdown")
        tasks = [p.task for p in producers if p.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.GRACEFUL_TIMEOUT_S)
