"""Fault: any interleaving of produce / read-then-disconnect / resume on either instance /
history trimming / stop / Redis restart (with its data); and Redis coming back from a crash
with an older snapshot (acknowledged events lost).

A Hypothesis ``RuleBasedStateMachine`` drives two ``StreamManager`` + ``RedisStreamLog``
pairs (two app instances) on one real ``redis-server`` (``own_redis``), scripted provider,
``STREAM_HISTORY_SIZE`` 16 (the minimum: trimming happens within a few steps) and
``STREAM_SNAPSHOT_AFTER`` 10. Driving the managers directly, not two HTTP servers, keeps an
example fast; what a reader receives is the same ``Entry`` list an SSE body or WebSocket
frames are made of, and every event is validated against the contract.

Invariant, for every reader (one per stream and reader number; it reconnects on either
instance with its cursor, as ``Last-Event-ID``): what it received, de-duplicated by id,
is an ordered run of the log with no gap, where ``snapshot`` replaces the state and moves
the cursor; a ``reset`` has no id and moves nothing (a reader cut off after it resumes into
a reset or the snapshot again); an epoch never changes without a reset; one id
never names two different events (across all readers); a synthetic ``log_unavailable``
error never moves the cursor. A reader whose view never needed a snapshot and reached
the end has exactly the text of the stream's final result.

The rollback case is one deterministic test (``test_a_redis_rollback_is_never_a_silent_gap``):
Redis SIGKILLed and restarted from its last ``SAVE`` loses events the producer had written;
the producer goes on after its last acknowledged seq (ids are never reused), so the log has
a hole. A reader whose cursor is before the hole (or a fresh one) must get ``reset`` +
``snapshot``, not the events on both sides of the hole as if they were contiguous.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from quartapp.engine import Engine
from quartapp.providers.scripted import ScriptedProvider
from quartapp.streams.events import TERMINAL, Entry, parse_event_id
from quartapp.streams.log import LogUnavailable
from quartapp.streams.manager import StreamManager, StreamNotFound
from quartapp.streams.redis import RedisStreamLog
from tests.faults.support import make_settings
from tests.helpers import assert_valid_event
from tests.redis_server import RedisServer

MAX_STREAMS = 3
READERS_PER_STREAM = 2


@dataclass
class Reader:
    stream_id: str
    cursor: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    gone: bool = False  # the stream vanished (Redis came back without it)


def check_reader(reader: Reader, ids: dict[str, str]) -> None:
    """The invariant for one reader's whole history of events (see the module docstring)."""
    cursor: int | None = None
    epoch: str | None = None
    snapshotted = False
    events = reader.events
    for i, event in enumerate(events):
        kind = event["type"]
        received = [e.get("id") for e in events]
        where = f"reader of {reader.stream_id}, event {i} ({event.get('id')} {kind}); ids {received}"
        if kind == "reset":
            # no id, the cursor stays; a reader cut off here gets a reset again, or the snapshot
            assert "id" not in event, where
            after = events[i + 1]["type"] if i + 1 < len(events) else None
            assert after in (None, "snapshot", "reset", "error"), f"reset without a snapshot: {where}"
            continue
        parsed = parse_event_id(event["id"])
        assert parsed is not None, event
        e_epoch, seq = parsed
        if kind == "error" and event["data"]["code"] == "log_unavailable":
            assert seq == (cursor or 0), f"a log_unavailable error moved the cursor: {where}"
            continue
        if kind == "snapshot":
            if epoch is not None and e_epoch != epoch:
                assert i > 0 and events[i - 1]["type"] == "reset", f"a new epoch without a reset: {where}"
            epoch, cursor, snapshotted = e_epoch, seq, True
            continue
        assert epoch is None or e_epoch == epoch, f"a new epoch without a reset: {where}"
        content = kind + json.dumps(event["data"], sort_keys=True)
        assert ids.setdefault(event["id"], content) == content, f"one id names two different events: {where}"
        if cursor is not None and seq <= cursor:
            continue  # a duplicate (at-least-once): dropped by id
        expected = 1 if cursor is None else cursor + 1
        assert seq == expected, f"gap: expected seq {expected}: {where}"
        epoch, cursor = e_epoch, seq
    terminal = next((e for e in events if e["type"] in TERMINAL and e["data"].get("code") != "log_unavailable"), None)
    if terminal is not None and not snapshotted and "result" in terminal["data"]:
        tokens: dict[str, str] = {}
        for e in events:
            if e["type"] == "token":
                tokens.setdefault(e["id"], e["data"]["text"])
        text, result = "".join(tokens.values()), terminal["data"]["result"]["text"]
        # a stop that lands while a token's append is being retried keeps that token in the result only
        exact = terminal["data"].get("reason") != "stop_requested"
        assert text == result if exact else result.startswith(text), (
            f"the streamed text is not the result's: reader of {reader.stream_id}: {text!r} vs {result!r}"
        )


def receive(reader: Reader, entry: Entry) -> dict[str, Any]:
    """What an SSE reader makes of one entry: the event (validated), and its cursor moved on,
    except by a ``reset`` (framed without an id) or a ``log_unavailable`` error (the cursor stays)."""
    event: dict[str, Any] = {"type": entry.type, "data": entry.decoded()}
    if entry.type != "reset":
        event["id"] = entry.id
    reader.events.append(assert_valid_event(event, "sse"))
    if entry.type != "reset" and not (entry.type == "error" and event["data"]["code"] == "log_unavailable"):
        reader.cursor = entry.id
    return event


def ranges(ids: list[str]) -> str:
    """``1-16, 36-82``: the seqs of event ids, as runs."""
    seqs = [int(i.rpartition("-")[2]) for i in ids]
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


#: What the examples exercised (printed at the end: a property that never saw a reset proves little).
COVERAGE: dict[str, int] = {}


class ResumeMachine(RuleBasedStateMachine):
    redis: RedisServer  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        conf = make_settings(
            STREAM_LOG="redis",
            REDIS_URL=self.redis.url,
            STREAM_HISTORY_SIZE=16,
            STREAM_SNAPSHOT_AFTER=10,
            PRODUCER_LEASE_S=2.0,
            HEARTBEAT_INTERVAL_S=0.3,
        )
        prefix = f"h{secrets.token_hex(4)}:"  # each example its own keys and stop channel
        self.logs = [RedisStreamLog(conf, prefix=prefix) for _ in range(2)]
        self.engines = [Engine(conf, ScriptedProvider(0.002)) for _ in range(2)]
        self.managers = [StreamManager(conf, engine, log) for engine, log in zip(self.engines, self.logs, strict=True)]
        self.streams: dict[str, int] = {}  # stream id -> producing instance
        self.readers: dict[tuple[str, int], Reader] = {}
        self.ids: dict[str, str] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    # -- rules ----------------------------------------------------------------------

    @initialize(instance=st.integers(0, 1), tokens=st.integers(10, 80))
    def first_stream(self, instance: int, tokens: int) -> None:
        self.start(instance, tokens)

    @precondition(lambda self: len(self.streams) < MAX_STREAMS)
    @rule(instance=st.integers(0, 1), tokens=st.integers(10, 80))
    def start(self, instance: int, tokens: int) -> None:
        engine = self.engines[instance]
        request = engine.prepare("ask_question", f"stream {len(self.streams)}", tokens, scripted_interval_ms=2)
        try:
            info = self.run(self.managers[instance].start(request))
        except LogUnavailable:
            return
        self.streams[info.stream_id] = instance
        for n in range(READERS_PER_STREAM):
            self.readers[(info.stream_id, n)] = Reader(info.stream_id)

    @precondition(lambda self: bool(self.readers))
    @rule(data=st.data(), instance=st.integers(0, 1), count=st.integers(1, 25))
    def read_then_disconnect(self, data: st.DataObject, instance: int, count: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.readers)))
        self.run(self._read(self.readers[key], self.managers[instance], count, 1.0))

    @rule(ms=st.integers(5, 300))
    def advance(self, ms: int) -> None:
        self.run(asyncio.sleep(ms / 1000))

    @precondition(lambda self: bool(self.streams))
    @rule(data=st.data(), instance=st.integers(0, 1))
    def stop(self, data: st.DataObject, instance: int) -> None:
        stream_id = data.draw(st.sampled_from(sorted(self.streams)))
        with contextlib.suppress(StreamNotFound, LogUnavailable):
            self.run(asyncio.wait_for(self.managers[instance].stop(stream_id), 8))

    @rule(chance=st.integers(0, 5))
    def restart_redis(self, chance: int) -> None:
        if chance:
            return  # one draw in six: a rule without arguments would be drawn as often as all reads
        COVERAGE["redis restarts"] = COVERAGE.get("redis restarts", 0) + 1
        self.redis.restart(keep_data=True)  # SHUTDOWN SAVE, start: every acknowledged write is back

    # -- reading ----------------------------------------------------------------------

    async def _read(self, reader: Reader, manager: StreamManager, count: int, timeout: float) -> None:
        """Follow from the reader's cursor, take up to ``count`` events, then disconnect."""
        if reader.finished or reader.gone:
            return
        taken = 0
        try:
            agen = manager.follow(reader.stream_id, reader.cursor)
        except StreamNotFound:
            reader.gone = True
            return
        try:
            async with asyncio.timeout(timeout):
                async for batch in agen:
                    for entry in batch:
                        event = receive(reader, entry)
                        taken += 1
                        if entry.type == "error" and event["data"]["code"] == "log_unavailable":
                            return  # the connection ends here; the cursor stays
                        if entry.type in TERMINAL:
                            reader.finished = True
                            return
                        if taken >= count:
                            return  # a cut anywhere, between a reset and its snapshot too
        except StreamNotFound:
            reader.gone = True
        except (TimeoutError, LogUnavailable):
            pass
        finally:
            await agen.aclose()

    # -- the invariant and the end ----------------------------------------------------------

    def check(self) -> None:
        for reader in self.readers.values():
            check_reader(reader, self.ids)
            for event in reader.events:
                kind = event["type"] if event["type"] != "error" else "error " + event["data"]["code"]
                COVERAGE[kind] = COVERAGE.get(kind, 0) + 1
        COVERAGE["examples"] = COVERAGE.get("examples", 0) + 1

    def teardown(self) -> None:
        try:
            self.run(self._finish())
            self.check()
        finally:
            self.run(self._close())
            self.loop.close()

    async def _finish(self) -> None:
        """Stop what still runs, then let every reader read to the end: the invariant on whole streams."""
        for stream_id, instance in self.streams.items():
            with contextlib.suppress(StreamNotFound, LogUnavailable, TimeoutError):
                await asyncio.wait_for(self.managers[instance].stop(stream_id), 8)
        for (_, n), reader in sorted(self.readers.items()):
            for _ in range(5):
                if reader.finished or reader.gone:
                    break
                await self._read(reader, self.managers[n % 2], 10_000, 3.0)

    async def _close(self) -> None:
        for manager in self.managers:
            for producer in list(manager._producers.values()):
                if producer.task is not None:
                    producer.task.cancel()
        for stream_log in self.logs:
            await stream_log.close()
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.slow
@pytest.mark.server_errors_expected  # Redis restarts are logged by the log's background tasks
def test_resume_invariant_holds_for_any_interleaving(own_redis: RedisServer) -> None:
    ResumeMachine.redis = own_redis
    COVERAGE.clear()
    run_state_machine_as_test(
        ResumeMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"\nresume property: {took(COVERAGE)}")


def took(coverage: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(coverage.items()))


async def test_a_redis_rollback_is_never_a_silent_gap(own_redis: RedisServer) -> None:
    conf = make_settings(STREAM_LOG="redis", REDIS_URL=own_redis.url, PRODUCER_LEASE_S=2.0, STREAM_SNAPSHOT_AFTER=1000)
    prefix = f"rb{secrets.token_hex(3)}:"
    logs = [RedisStreamLog(conf, prefix=prefix) for _ in range(2)]  # one shared set of keys: two instances
    engines = [Engine(conf, ScriptedProvider(0.01)) for _ in range(2)]
    a, b = (StreamManager(conf, engine, log) for engine, log in zip(engines, logs, strict=True))
    machine_ids: dict[str, str] = {}
    try:
        request = engines[0].prepare("ask_question", "rollback", 80, scripted_interval_ms=10)
        info = await a.start(request)
        early = Reader(info.stream_id)
        await _follow(a, early, 6)  # a reader that stopped early, before what will be lost
        async with asyncio.timeout(10):
            while (await logs[0].info(info.stream_id)).last_seq < 15:
                await asyncio.sleep(0.01)
        assert own_redis.command("SAVE") == b"+OK"
        async with asyncio.timeout(10):
            while (await logs[0].info(info.stream_id)).last_seq < 35:
                await asyncio.sleep(0.01)
        lost_from = (await logs[0].info(info.stream_id)).last_seq
        await asyncio.to_thread(own_redis.kill)  # a crash: Redis comes back with the SAVE above
        await asyncio.to_thread(own_redis.start)
        async with asyncio.timeout(20):
            while a.active:
                await asyncio.sleep(0.05)
        fresh = Reader(info.stream_id)
        await _follow(b, fresh, 10_000)
        await _follow(b, early, 10_000)
        readers = (("fresh", fresh), ("early", early))
        got = {name: ranges([e["id"] for e in r.events if "id" in e]) for name, r in readers}
        print(
            f"\nRedis rolled back to its SAVE (seq >= 15) while the producer was at seq {lost_from}: readers got {got}"
        )
        for reader in (fresh, early):
            assert reader.finished, reader
            check_reader(reader, machine_ids)
    finally:
        for log in logs:
            await log.close()


async def _follow(manager: StreamManager, reader: Reader, count: int) -> None:
    taken = 0
    agen = manager.follow(reader.stream_id, reader.cursor)
    try:
        async with asyncio.timeout(10):
            async for batch in agen:
                for entry in batch:
                    receive(reader, entry)
                    taken += 1
                    if entry.type in TERMINAL:
                        reader.finished = True
                        return
                    if taken >= count:
                        return
    finally:
        await agen.aclose()
