"""RedisStreamLog against a real redis-server on loopback (never fakeredis here).

What only a real server shows: Lua scripts, blocking XREAD across connections,
key expiry, pub/sub between instances, and what happens when the server goes
away and comes back. Two log objects on one server stand for two app instances.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from quartapp.config import load_settings
from quartapp.streams.events import Fold
from quartapp.streams.log import Fenced, LogUnavailable
from quartapp.streams.redis import APPEND_RETRY_S, RedisStreamLog
from quartapp.streams.redis.scripts import AppendCall
from tests.redis_server import RedisServer

MakeLog = Callable[..., RedisStreamLog]


def _token(text: str) -> dict[str, Any]:
    return {"text": text, "tokens": 1}


START = {"stream_id": "x", "block_type": "ask_question", "provider": "scripted", "model": "m", "scripted": True}
DONE = {
    "status": "complete",
    "reason": "finished",
    "usage": {"input_tokens": 1, "output_tokens": 2},
    "result": {"block_type": "ask_question", "text": "ab"},
}


def _factory(server: RedisServer, made: list[RedisStreamLog]) -> MakeLog:
    prefix = f"t{secrets.token_hex(3)}:"  # each test its own keys and stop channel

    def make(**overrides: Any) -> RedisStreamLog:
        values: dict[str, Any] = {"STREAM_LOG": "redis", "REDIS_URL": server.url, "PRODUCER_LEASE_S": 3.0}
        values.update(overrides)
        stream_log = RedisStreamLog(load_settings(environ={}, env_file=None, **values), prefix=prefix)
        made.append(stream_log)
        return stream_log

    return make


@pytest.fixture(name="make_log")
async def _make_log(redis_server: RedisServer) -> AsyncIterator[MakeLog]:
    made: list[RedisStreamLog] = []
    yield _factory(redis_server, made)
    for stream_log in made:
        await stream_log.close()


@pytest.fixture(name="make_own_log")
async def _make_own_log(own_redis: RedisServer) -> AsyncIterator[MakeLog]:
    made: list[RedisStreamLog] = []
    yield _factory(own_redis, made)
    for stream_log in made:
        await stream_log.close()


async def test_append_read_snapshot_info(make_log: MakeLog) -> None:
    a = make_log()
    info = await a.create("s1", "alice", "quiz")
    assert (info.first_seq, info.last_seq, info.status, info.owner) == (1, 0, "running", "alice")
    start = await a.append("s1", "start", START)
    assert start.id == f"{info.epoch}-1" and start.json == b'{"stream_id":"x","block_type":"ask_question",' + (
        b'"provider":"scripted","model":"m","scripted":true}'
    )
    await a.append("s1", "token", {"text": "Hel", "tokens": 2})
    question = {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer_index": 1, "explanation": "e"}
    await a.append("s1", "quiz.question", {"index": 0, "question": question}, Fold.QUESTION)
    await a.append("s1", "diagram.partial", {"text": "lo"}, Fold.TEXT)

    b = make_log()  # another instance sees the same stream
    entries = await b.read("s1", 0, 100)
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert [e.type for e in entries] == ["start", "token", "quiz.question", "diagram.partial"]
    assert entries[1].decoded() == {"text": "Hel", "tokens": 2}
    assert [e.seq for e in await b.read("s1", 1, 2)] == [2, 3]
    assert await b.read("s1", 4, 10) == []
    state, through = await b.snapshot("s1")
    assert through == 4
    assert state == {"start": START, "text": "Hello", "questions": [question], "output_tokens": 3}
    info_b = await b.info("s1")
    assert info_b is not None and (info_b.epoch, info_b.last_seq, info_b.block_type) == (info.epoch, 4, "quiz")
    assert await b.find_by_epoch(info.epoch) == "s1"

    done = await a.append("s1", "done", DONE)
    ended = await b.info("s1")
    assert ended is not None and ended.status == "complete" and ended.ended_at is not None
    assert done.seq == 5 and (await b.read("s1", 4, 10))[0].type == "done"


async def test_unknown_stream(make_log: MakeLog) -> None:
    a = make_log()
    assert await a.info("nope") is None
    assert await a.read("nope", 0, 10) == []
    assert await a.wait("nope", 0, 5.0) == []  # at once, as the memory log does
    assert await a.find_by_epoch("deadbeef") is None
    with pytest.raises(KeyError):
        await a.snapshot("nope")


async def test_wait_wakes_across_instances_and_times_out(make_log: MakeLog) -> None:
    a, b = make_log(), make_log()
    await a.create("s1", "", "ask_question")
    t0 = time.perf_counter()
    assert await b.wait("s1", 0, 0.3) == []
    assert 0.25 < time.perf_counter() - t0 < 1.5

    waiters = [asyncio.create_task(b.wait("s1", 0, 10.0)) for _ in range(50)]
    await asyncio.sleep(0.1)
    t0 = time.perf_counter()
    await a.append("s1", "start", START)
    results = await asyncio.gather(*waiters)
    latency = time.perf_counter() - t0
    print(f"\nwake latency across instances, 50 waiters: {latency * 1000:.1f} ms")
    assert latency < 1.0
    assert all(len(r) == 1 and r[0].seq == 1 for r in results)
    assert len({id(r[0]) for r in results}) == 1  # one poll, one Entry shared by every local reader

    # a reader that is behind gets what it missed at once, then tails
    for i in range(5):
        await a.append("s1", "token", _token(str(i)))
    assert [e.seq for e in await b.wait("s1", 2, 5.0)] == [3, 4, 5, 6]
    later = asyncio.create_task(b.wait("s1", 6, 5.0))
    await asyncio.sleep(0.05)
    await a.append("s1", "token", _token("z"))
    assert [e.seq for e in await later] == [7]


async def test_a_stream_joins_a_running_poll_at_once(make_log: MakeLog) -> None:
    """Regression: a stream first waited on while the poller sat in XREAD was dropped from the
    poll before its waiter counted, so that waiter only woke at its 1.5 s safety check."""
    a, b = make_log(), make_log()
    await a.create("s1", "", "ask_question")
    await a.create("s2", "", "ask_question")
    quiet = asyncio.create_task(b.wait("s1", 0, 5.0))  # the poller now blocks on s1
    await asyncio.sleep(0.1)
    for round_ in range(3):
        waiter = asyncio.create_task(b.wait("s2", round_, 5.0))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        await a.append("s2", "token", _token("x"))
        assert [e.seq for e in await waiter] == [round_ + 1]
        assert time.perf_counter() - t0 < 0.5
    await a.append("s1", "token", _token("y"))
    assert [e.seq for e in await quiet] == [1]


async def test_history_trimmed_exactly(make_log: MakeLog) -> None:
    a = make_log(STREAM_HISTORY_SIZE=16)
    await a.create("s1", "", "ask_question")
    for i in range(40):
        await a.append("s1", "token", _token(f"{i} "))
    info = await a.info("s1")
    assert info is not None and (info.first_seq, info.last_seq) == (25, 40)
    assert [e.seq for e in await a.read("s1", 0, 100)] == list(range(25, 41))
    assert [e.seq for e in await a.read("s1", 30, 3)] == [31, 32, 33]
    state, through = await a.snapshot("s1")  # the fold still holds everything
    assert through == 40 and state["text"].startswith("0 1 2 ") and state["output_tokens"] == 40


async def test_retention_after_the_end(make_log: MakeLog, redis_server: RedisServer) -> None:
    a = make_log(STREAM_RETENTION_S=1.0)
    info = await a.create("s1", "", "quiz")
    await a.append("s1", "token", _token("x"))
    await a.append("s1", "quiz.question", {"index": 0, "question": {"q": 1}}, Fold.QUESTION)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        keys = sorted(k.decode() for k in await raw.keys(a._shared.prefix + "*") if b"fence" not in k)
        assert len(keys) == 6  # events meta text questions lease epoch
        ttls = {k.rpartition(":")[2]: await raw.pttl(k) for k in keys}
        assert 0 < ttls.pop("lease") <= 3000
        assert all(ttl > 60_000 for ttl in ttls.values())  # the safety TTL while running
        await a.append("s1", "done", DONE)
        assert await raw.exists(a._shared.keys("s1").lease) == 0  # the lease goes with the end
        assert all([0 < await raw.pttl(k) <= 1000 for k in keys if not k.endswith(":lease")])
        await asyncio.sleep(1.2)
        assert await a.info("s1") is None
        assert await a.find_by_epoch(info.epoch) is None
        assert await raw.keys(a._shared.prefix + "{s1}*") == []
    finally:
        await raw.aclose()


async def test_fencing(make_log: MakeLog, redis_server: RedisServer) -> None:
    a, b = make_log(), make_log()
    await a.create("s1", "", "ask_question")
    await a.append("s1", "start", START)
    with pytest.raises(Fenced):  # b does not hold the lease
        await b.append("s1", "token", _token("b"))
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await raw.set(a._shared.keys("s1").lease, "thief:999", px=10_000)  # the lease is stolen
        with pytest.raises(Fenced):
            await a.append("s1", "token", _token("a"))
    finally:
        await raw.aclose()
    assert [e.type for e in await b.read("s1", 0, 10)] == ["start"]


async def test_append_retry_is_idempotent(make_log: MakeLog) -> None:
    """A retried append (its reply lost) must not add the event twice: the script remembers the last id."""
    a = make_log()
    await a.create("s1", "", "ask_question")
    call = AppendCall(
        stream=a._shared.keys("s1"),
        epoch_key=a._shared.epoch_key(""),
        mode="p",
        token=a._writer._produced["s1"],
        append_id="append-1",
        event_type="token",
        fold=Fold.TEXT,
        payload=b'{"text":"x","tokens":1}',
        maxlen=100,
        lease_ms=3000,
        text="x",
        tokens=1,
        retention_ms=1000,
        safety_ms=60000,
    )
    first = await a._shared.scripts.append(call)
    again = await a._shared.scripts.append(call)
    assert first[0] == again[0] == 1
    assert len(await a.read("s1", 0, 10)) == 1


async def test_stop_request_reaches_the_producing_instance(make_log: MakeLog) -> None:
    a, b = make_log(), make_log()
    stopped: list[tuple[str, float]] = []
    a.on_stop_request(lambda stream_id: stopped.append((stream_id, time.perf_counter())))
    await a.create("s1", "", "ask_question")  # returns once a's stop channel is subscribed
    t0 = time.perf_counter()
    await b.request_stop("s1")
    for _ in range(100):
        if stopped:
            break
        await asyncio.sleep(0.01)
    assert stopped and stopped[0][0] == "s1"
    print(f"\nstop request latency across instances: {(stopped[0][1] - t0) * 1000:.1f} ms")


async def test_producer_lost(make_log: MakeLog) -> None:
    a = make_log(PRODUCER_LEASE_S=1.0)
    await a.create("s1", "", "quiz")
    await a.append("s1", "start", START)
    await a.append("s1", "token", _token('{"questions": ['))
    await asyncio.sleep(1.2)  # renewals keep a live producer's stream running past the lease
    b, c = make_log(PRODUCER_LEASE_S=1.0), make_log(PRODUCER_LEASE_S=1.0)
    assert await b.wait("s1", 2, 0.5) == []
    await a.close()  # the producer's instance dies: no renewals, no terminal event
    t0 = time.perf_counter()
    results = await asyncio.gather(b.wait("s1", 2, 10.0), b.wait("s1", 2, 10.0), c.wait("s1", 2, 10.0))
    detected = time.perf_counter() - t0
    print(f"\nproducer_lost detected {detected:.2f} s after the producer died (lease 1 s)")
    assert detected < 1.0 + 2.0
    assert all([e.seq for e in r] == [3] for r in results)  # exactly one error, seen by every reader
    error = results[0][0]
    assert error.type == "error"
    assert error.decoded() == {
        "code": "producer_lost",
        "message": "the server producing this stream stopped; start it again",
        "status": "interrupted",
        "retryable": True,
        "result": {"block_type": "quiz", "text": '{"questions": [', "questions": []},
    }
    info = await c.info("s1")
    assert info is not None and info.status == "interrupted" and info.last_seq == 3


async def test_healthy_and_close_keeps_data(make_log: MakeLog) -> None:
    a, b = make_log(), make_log()
    assert await a.healthy()
    await a.create("s1", "", "ask_question")
    await a.append("s1", "start", START)
    await a.close()
    assert len(await b.read("s1", 0, 10)) == 1


async def test_replay_2000_events(make_log: MakeLog) -> None:
    a = make_log()
    await a.create("s1", "", "ask_question")
    t0 = time.perf_counter()
    for i in range(2000):
        await a.append("s1", "token", _token(f"w{i} "))
    append_s = time.perf_counter() - t0
    b = make_log()  # no cache: everything comes from Redis
    t0 = time.perf_counter()
    entries = await b.read("s1", 0, 10_000)
    replay_s = time.perf_counter() - t0
    each_us = append_s / 2000 * 1e6
    print(f"\n2000 appends: {append_s * 1000:.0f} ms ({each_us:.0f} us each); replay: {replay_s * 1000:.1f} ms")
    assert [e.seq for e in entries] == list(range(1, 2001))
    assert entries[-1].sse.endswith(b'data: {"text":"w1999 ","tokens":1}\n\n')
    assert replay_s < 1.0


@pytest.mark.slow
async def test_short_outage_is_ridden_out(make_own_log: MakeLog, own_redis: RedisServer) -> None:
    a = make_own_log()
    await a.create("s1", "", "ask_question")
    await a.append("s1", "start", START)
    outage = asyncio.create_task(asyncio.to_thread(own_redis.restart, 2.0, True))
    t0 = time.perf_counter()
    slowest = 0.0
    for i in range(60):  # ~3 s of appends across a 2 s outage
        before = time.perf_counter()
        await a.append("s1", "token", _token(f"{i} "))
        slowest = max(slowest, time.perf_counter() - before)
        await asyncio.sleep(0.05)
    await outage
    print(f"\n2 s Redis outage: 60 appends in {time.perf_counter() - t0:.1f} s, slowest append {slowest:.2f} s")
    entries = await a.read("s1", 0, 1000)
    assert [e.seq for e in entries] == list(range(1, 62))  # no loss, no duplicate
    state, _ = await a.snapshot("s1")
    assert state["text"] == "".join(f"{i} " for i in range(60))


@pytest.mark.slow
async def test_long_outage_then_recovery(make_own_log: MakeLog, own_redis: RedisServer) -> None:
    a = make_own_log(PRODUCER_LEASE_S=1.0)
    await a.create("s1", "", "ask_question")
    await a.append("s1", "start", START)
    await asyncio.to_thread(own_redis.stop, True)
    t0 = time.perf_counter()
    with pytest.raises(LogUnavailable):
        await a.append("s1", "token", _token("lost"))
    gave_up = time.perf_counter() - t0
    assert APPEND_RETRY_S - 1.0 < gave_up < APPEND_RETRY_S + 2.0
    assert await a.wait("s1", 1, 0.5) == []  # readers heartbeat instead of failing
    assert await a.read("s1", 0, 10) == []
    with pytest.raises(LogUnavailable):
        await a.info("s1")
    assert not await a.healthy()

    await asyncio.to_thread(own_redis.start)
    t0 = time.perf_counter()
    for _ in range(100):
        try:
            await a.create("s2", "", "ask_question")
            await a.append("s2", "start", START)
            break
        except LogUnavailable:
            await asyncio.sleep(0.05)
    recovery = time.perf_counter() - t0
    print(f"\nappend gave up after {gave_up:.2f} s; new stream working {recovery * 1000:.0f} ms after Redis returned")
    assert recovery < 5.0 and await a.healthy()
    assert [e.seq for e in await a.read("s2", 0, 10)] == [1]
    # the stream whose producer gave up is not left running forever: its readers get producer_lost
    entries = await a.wait("s1", 1, 5.0)
    assert [(e.seq, e.type) for e in entries] == [(2, "error")] and entries[0].decoded()["code"] == "producer_lost"


@pytest.mark.slow
async def test_redis_crash_losing_events_never_reuses_their_ids(
    make_own_log: MakeLog, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarts without its last writes (a crash after the last snapshot): the producer's
    next event must not take the id of an event a reader may already hold, and the log becomes a
    new incarnation (new epoch, history after the hole, the producer's full state) so that no
    reader can read across the hole unknowingly."""
    a = make_own_log()
    await a.create("s1", "", "ask_question")
    for i in range(3):
        await a.append("s1", "token", _token(str(i)))
    own_redis.command("SAVE")
    for i in range(3, 6):
        await a.append("s1", "token", _token(str(i)))  # seqs 4..6: acknowledged, then lost
    await asyncio.to_thread(own_redis.kill)
    await asyncio.to_thread(own_redis.start)
    before = await a.info("s1")
    entry = await a.append("s1", "token", _token("after"))
    assert entry.seq == 7
    info = await a.info("s1")
    assert info is not None and before is not None
    assert info.epoch != before.epoch and entry.id == f"{info.epoch}-7"
    assert info.first_seq == 7  # the events before the hole are not served any more
    assert [e.seq for e in await a.read("s1", 0, 10)] == [7]
    state, through = await a.snapshot("s1")
    assert through == 7 and state["text"] == "012345after"  # nothing the producer sent is lost
    assert "redis lost acknowledged events" in caplog.text
