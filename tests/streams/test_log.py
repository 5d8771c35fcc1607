"""The stream log contract, run against every backend (``params``): a Redis log joins by adding its name."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from quartapp.blocks import builtin_registry
from quartapp.config import load_settings
from quartapp.streams.events import Entry, Fold
from quartapp.streams.log import Fenced, MemoryStreamLog, StreamLog
from tests.helpers import assert_valid_event
from tests.redis_server import RedisServer

MakeLog = Callable[..., Awaitable[StreamLog]]

START = {
    "stream_id": "s1",
    "block_type": "ask_question",
    "provider": "scripted",
    "model": "scripted-v1",
    "scripted": True,
    "notice": None,
}
USAGE = {"input_tokens": 3, "output_tokens": 2}


def token(text: str, tokens: int = 1) -> dict[str, object]:
    return {"text": text, "tokens": tokens}


def done(status: str = "complete", text: str = "") -> dict[str, object]:
    return {
        "status": status,
        "reason": "finished",
        "usage": USAGE,
        "result": {"block_type": "ask_question", "text": text},
    }


@pytest.fixture(name="make_log", params=["memory", "redis"])
async def _make_log(request: pytest.FixtureRequest) -> AsyncIterator[MakeLog]:
    logs: list[StreamLog] = []

    async def make(history: int = 100, retention: float = 60.0) -> StreamLog:
        if request.param == "memory":
            # one event per append, as the Redis log does: merging is the memory log's own (tested below)
            log: StreamLog = MemoryStreamLog(history, retention, coalesce_max_tokens=1)
        elif request.param == "redis":
            from quartapp.streams.redis import RedisStreamLog

            server: RedisServer = request.getfixturevalue("redis_server")
            settings = load_settings(
                environ={},
                env_file=None,
                STREAM_LOG="redis",
                REDIS_URL=server.url,
                STREAM_HISTORY_SIZE=history,
                STREAM_RETENTION_S=retention,
            )
            log = RedisStreamLog(settings, prefix=f"c{secrets.token_hex(3)}:")  # keys of this test only
        else:  # pragma: no cover - a backend this suite does not know yet
            raise NotImplementedError(request.param)
        logs.append(log)
        return log

    yield make
    for log in logs:
        await log.close()


async def test_create_gives_a_running_stream_with_a_fresh_epoch(make_log: MakeLog) -> None:
    log = await make_log()
    one = await log.create("s1", "owner", "quiz")
    two = await log.create("s2", "owner", "quiz")
    assert (one.stream_id, one.owner, one.block_type, one.status) == ("s1", "owner", "quiz", "running")
    assert (one.first_seq, one.last_seq, one.ended_at) == (1, 0, None)
    assert one.epoch != two.epoch
    assert abs(one.created_at - time.time()) < 60
    assert await log.info("nope") is None
    assert await log.healthy()


async def test_append_numbers_events_and_read_returns_them_in_order(make_log: MakeLog) -> None:
    log = await make_log()
    info = await log.create("s1", "", "ask_question")
    entries = [await log.append("s1", "start", START)]
    entries += [await log.append("s1", "token", token(c)) for c in "abcde"]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert [e.id for e in entries] == [f"{info.epoch}-{i}" for i in range(1, 7)]
    for entry in entries:
        assert_valid_event(json.loads(entry.ws), "ws")
    assert [e.seq for e in await log.read("s1", 0, 100)] == [1, 2, 3, 4, 5, 6]
    assert [e.seq for e in await log.read("s1", 3, 100)] == [4, 5, 6]
    assert [e.seq for e in await log.read("s1", 1, 2)] == [2, 3]
    assert await log.read("s1", 6, 100) == []
    assert await log.read("s1", 60, 100) == []
    assert await log.read("nope", 0, 100) == []
    after = await log.info("s1")
    assert after is not None and (after.first_seq, after.last_seq, after.status) == (1, 6, "running")


async def test_terminal_event_ends_the_stream(make_log: MakeLog) -> None:
    log = await make_log()
    await log.create("s1", "", "ask_question")
    await log.append("s1", "token", token("hi"))
    await log.append("s1", "done", done("stopped", "hi"))
    info = await log.info("s1")
    assert info is not None and info.status == "stopped" and info.ended_at is not None


async def test_wait_returns_at_once_when_events_are_there(make_log: MakeLog) -> None:
    log = await make_log()
    await log.create("s1", "", "ask_question")
    await log.append("s1", "token", token("a"))
    async with asyncio.timeout(1):
        assert [e.seq for e in await log.wait("s1", 0, 30.0)] == [1]


async def test_wait_wakes_on_append(make_log: MakeLog) -> None:
    log = await make_log()
    await log.create("s1", "", "ask_question")
    await log.append("s1", "token", token("a"))

    async def later() -> None:
        await asyncio.sleep(0.05)
        await log.append("s1", "token", token("b"))
        await log.append("s1", "token", token("c"))

    writer = asyncio.create_task(later())
    started = time.monotonic()
    async with asyncio.timeout(2):
        entries = await log.wait("s1", 1, 5.0)
    assert entries and entries[0].seq == 2
    assert time.monotonic() - started < 1.0
    await writer
    assert [e.seq for e in await log.read("s1", 1, 10)] == [2, 3]


async def test_wait_times_out_empty(make_log: MakeLog) -> None:
    log = await make_log()
    await log.create("s1", "", "ask_question")
    started = time.monotonic()
    assert await log.wait("s1", 0, 0.05) == []
    assert 0.04 <= time.monotonic() - started < 1.0
    assert await log.wait("nope", 0, 0.05) == []


async def test_many_waiters_all_wake(make_log: MakeLog) -> None:
    log = await make_log()
    await log.create("s1", "", "ask_question")
    waiters = [asyncio.create_task(log.wait("s1", 0, 5.0)) for _ in range(20)]
    await asyncio.sleep(0.01)
    await log.append("s1", "token", token("x"))
    async with asyncio.timeout(2):
        results = await asyncio.gather(*waiters)
    assert all([e.seq for e in r] == [1] for r in results)


async def test_history_is_bounded_and_first_seq_moves(make_log: MakeLog) -> None:
    log = await make_log(history=16)
    await log.create("s1", "", "ask_question")
    for i in range(40):
        await log.append("s1", "token", token(str(i)))
    info = await log.info("s1")
    assert info is not None and (info.first_seq, info.last_seq) == (25, 40)
    kept = await log.read("s1", 0, 100)
    assert [e.seq for e in kept] == list(range(25, 41))
    assert [e.seq for e in await log.read("s1", 30, 100)] == list(range(31, 41))
    assert [e.seq for e in await log.read("s1", 24, 3)] == [25, 26, 27]
    # the fold still covers everything, trimmed or not
    state, through = await log.snapshot("s1")
    assert through == 40 and state["text"] == "".join(str(i) for i in range(40)) and state["output_tokens"] == 40


async def test_snapshot_folds_the_stream(make_log: MakeLog) -> None:
    log = await make_log()
    await log.create("s1", "", "quiz")
    await log.append("s1", "start", START)
    await log.append("s1", "token", token('{"q', 2))
    question = {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer_index": 1, "explanation": "b."}
    await log.append("s1", "quiz.question", {"index": 0, "question": question}, Fold.QUESTION)
    await log.append("s1", "token", token('"}', 1))
    state, through = await log.snapshot("s1")
    assert through == 4
    assert state == {"start": START, "text": '{"q"}', "questions": [question], "output_tokens": 3}
    assert_valid_event({"id": "ab-4", "type": "snapshot", "data": state}, "sse")


async def test_finished_stream_expires_after_retention(make_log: MakeLog) -> None:
    log = await make_log(retention=0.1)
    info = await log.create("s1", "", "ask_question")
    await log.create("running", "", "ask_question")
    await log.append("s1", "done", done())
    assert await log.info("s1") is not None
    assert await log.find_by_epoch(info.epoch) == "s1"
    await asyncio.sleep(0.15)
    assert await log.info("s1") is None
    assert await log.find_by_epoch(info.epoch) is None
    assert await log.read("s1", 0, 10) == []
    running = await log.info("running")  # retention counts from the end: a running stream stays
    assert running is not None and running.status == "running"


async def test_expired_streams_are_dropped_when_new_ones_start(make_log: MakeLog) -> None:
    log = await make_log(retention=0.05)
    old = await log.create("old", "", "ask_question")
    await log.append("old", "error", {"code": "x", "message": "m", "status": "failed", "retryable": False})
    await asyncio.sleep(0.1)
    await log.create("new", "", "ask_question")
    assert await log.find_by_epoch(old.epoch) is None


async def test_find_by_epoch(make_log: MakeLog) -> None:
    log = await make_log()
    one = await log.create("s1", "", "ask_question")
    two = await log.create("s2", "", "ask_question")
    assert await log.find_by_epoch(one.epoch) == "s1"
    assert await log.find_by_epoch(two.epoch) == "s2"
    assert await log.find_by_epoch("ffffffffff") is None


async def test_stop_requests_reach_the_registered_handler(make_log: MakeLog) -> None:
    log = await make_log()
    await log.create("s1", "", "ask_question")
    asked: list[str] = []
    log.on_stop_request(asked.append)
    await log.request_stop("s1")
    assert asked == ["s1"]


async def test_a_producer_outliving_the_memory_log_is_fenced_and_its_readers_wake() -> None:
    """A closed (or expired) stream is no longer writable: a producer still ending gets Fenced,
    which it handles, never a KeyError; a reader waiting on it returns instead of hanging."""
    log = MemoryStreamLog(history_size=16, retention_s=60)
    await log.create("s1", "", "ask_question")
    reader = asyncio.create_task(log.wait("s1", 0, 5.0))
    await asyncio.sleep(0.01)
    await log.close()
    async with asyncio.timeout(1):
        assert await reader == []
    with pytest.raises(Fenced):
        await log.append("s1", "token", token("late"))


async def test_memory_log_merges_tokens_no_reader_has_taken_up_to_the_limit() -> None:
    """Tokens faster than readers: fewer, larger events with the same text, none over the limit."""
    log = MemoryStreamLog(history_size=100, retention_s=60, coalesce_max_tokens=4)
    await log.create("s1", "", "ask_question")
    await log.append("s1", "start", START)
    for i in range(10):
        await log.append("s1", "token", token(f"w{i} "))
    entries = await log.read("s1", 0, 100)
    pieces = [e.decoded() for e in entries if e.type == "token"]
    assert [p["tokens"] for p in pieces] == [4, 4, 2]
    assert "".join(str(p["text"]) for p in pieces) == "".join(f"w{i} " for i in range(10))
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    state, through = await log.snapshot("s1")
    assert state["output_tokens"] == 10 and through == 4


async def test_memory_log_never_changes_an_event_a_reader_has_taken() -> None:
    """Once a reader built an event's bytes it is final: the next token is a new event,
    and a token after another event type never merges across it."""
    log = MemoryStreamLog(history_size=100, retention_s=60, coalesce_max_tokens=32)
    await log.create("s1", "", "quiz")
    first = await log.append("s1", "token", token("a"))
    sent = first.sse
    second = await log.append("s1", "token", token("b"))
    assert second is not first and second.seq == 2 and first.sse == sent
    question = {"index": 0, "question": {"question": "q", "choices": ["1", "2", "3", "4"],
                                         "answer_index": 0, "explanation": "e"}}  # fmt: skip
    await log.append("s1", "quiz.question", question)
    third = await log.append("s1", "token", token("c"))
    assert third.seq == 4
    entries = await log.read("s1", 0, 10)
    assert [(e.type, e.decoded().get("text")) for e in entries] == [
        ("token", "a"), ("token", "b"), ("quiz.question", None), ("token", "c"),
    ]  # fmt: skip


async def test_memory_log_never_merges_into_an_event_a_cursor_or_snapshot_names() -> None:
    """A reader waiting after seq N (from its cursor) or given a snapshot through N has N:
    the next token is N + 1, so the waiter wakes and nothing is lost to it."""
    log = MemoryStreamLog(history_size=100, retention_s=60, coalesce_max_tokens=32)
    await log.create("s1", "", "ask_question")
    await log.append("s1", "token", token("a"))
    waiter = asyncio.create_task(log.wait("s1", 1, 5.0))
    await asyncio.sleep(0.01)
    await log.append("s1", "token", token("b"))
    async with asyncio.timeout(1):
        assert [(e.seq, e.decoded()["text"]) for e in await waiter] == [(2, "b")]
    await log.append("s1", "token", token("c"))  # a new event: the waiter was handed seq 2
    _, through = await log.snapshot("s1")
    await log.append("s1", "token", token("d"))
    assert through == 3
    assert [(e.seq, e.decoded()["text"]) for e in await log.read("s1", 0, 10)] == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, "d"),
    ]


async def test_a_parked_reader_is_written_to_in_the_producers_own_step() -> None:
    """While a reader keeps up, each event is written to it by the appending task, at once,
    without waking the reader's task: one task step per token. Nothing merges into a
    delivered token, and the terminal event ends the park with the cursor on it."""
    log = MemoryStreamLog(history_size=100, retention_s=60, coalesce_max_tokens=32)
    await log.create("s1", "", "ask_question")
    written: list[tuple[int, asyncio.Task[object] | None]] = []

    async def deliver(entry: Entry) -> None:
        written.append((entry.seq, asyncio.current_task()))

    reader = asyncio.create_task(log.park("s1", 0, deliver, 5.0))
    await asyncio.sleep(0)
    producer = asyncio.current_task()
    for i in range(3):
        await log.append("s1", "token", token(f"w{i}"))
        assert written[-1] == (i + 1, producer)  # written during append, by the producer
    assert not reader.done()  # the reader's task slept through all three
    await log.append("s1", "done", done(text="w0w1w2"))
    async with asyncio.timeout(1):
        parked = await reader
    assert (parked.through, parked.delivered, parked.terminal) == (4, 4, True)
    assert [e.seq for e in await log.read("s1", 0, 10)] == [1, 2, 3, 4]  # three events, not merged


async def test_a_write_that_must_wait_is_finished_by_the_reader_and_nothing_is_lost() -> None:
    """A full socket buffer: the write that would block ends the park and the reader's task
    awaits the rest of it; what came meanwhile is read from the log, once, in order."""
    log = MemoryStreamLog(history_size=100, retention_s=60)
    await log.create("s1", "", "ask_question")
    unblocked = asyncio.Event()
    sent: list[str] = []

    async def deliver(entry: Entry) -> None:
        if entry.seq == 2:
            await unblocked.wait()
        sent.append(str(entry.decoded()["text"]))

    reader = asyncio.create_task(log.park("s1", 0, deliver, 5.0))
    await asyncio.sleep(0)
    await log.append("s1", "token", token("a"))
    await log.append("s1", "token", token("b"))  # blocks: handed to the reader
    await log.append("s1", "token", token("c"))  # the reader lags now: it is in the log only
    async with asyncio.timeout(1):
        parked = await reader
    assert parked.pending is not None and parked.through == 2 and sent == ["a"]
    unblocked.set()
    await parked.pending
    assert sent == ["a", "b"]
    assert [e.decoded()["text"] for e in await log.read("s1", parked.through, 10)] == ["c"]


async def test_a_failed_write_reaches_the_reader_and_a_cancelled_reader_is_not_written_to() -> None:
    log = MemoryStreamLog(history_size=100, retention_s=60)
    await log.create("s1", "", "ask_question")
    calls = 0

    async def broken(entry: Entry) -> None:
        raise ConnectionResetError("gone")

    async def counting(entry: Entry) -> None:
        nonlocal calls
        calls += 1

    failing = asyncio.create_task(log.park("s1", 0, broken, 5.0))
    leaving = asyncio.create_task(log.park("s1", 0, counting, 5.0))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    await log.append("s1", "token", token("a"))  # the producer goes on: the failure is the reader's
    async with asyncio.timeout(1):
        assert isinstance((await failing).error, ConnectionResetError)
    assert leaving.cancelled() and calls == 0


async def test_a_parked_reader_of_a_quiet_stream_wakes_for_its_heartbeat() -> None:
    log = MemoryStreamLog(history_size=100, retention_s=60)
    await log.create("s1", "", "ask_question")

    async def deliver(entry: Entry) -> None:
        raise AssertionError("nothing was appended")

    started = time.monotonic()
    async with asyncio.timeout(2):
        parked = await log.park("s1", 0, deliver, 0.2)
    assert parked.quiet and parked.delivered == 0 and 0.15 < time.monotonic() - started < 1.0
    await log.close()


async def test_an_alias_names_an_owners_newest_stream(make_log: MakeLog) -> None:
    """The AI SDK's chat id -> the chat's stream: per owner, the newest wins, on any instance."""
    log = await make_log()
    await log.create("s1", "alice", "ask_question")
    await log.create("s2", "alice", "ask_question")
    await log.set_alias("alice", "chat-1", "s1")
    assert await log.find_alias("alice", "chat-1") == "s1"
    await log.set_alias("alice", "chat-1", "s2")
    assert await log.find_alias("alice", "chat-1") == "s2"
    assert await log.find_alias("bob", "chat-1") is None  # another owner's name is another name
    assert await log.find_alias("alice", "chat-2") is None
    await log.set_alias("a:b", "c", "s1")  # owners and names are kept apart whatever they hold
    assert await log.find_alias("a", "b:c") is None


# -- the fold, one table for every implementation ---------------------------------------------------

FOLD_CASES = json.loads((Path(__file__).resolve().parents[2] / "contracts" / "fold-cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", FOLD_CASES, ids=[c["name"] for c in FOLD_CASES])
async def test_every_log_folds_a_stream_as_the_shared_table_says(make_log: MakeLog, case: dict[str, Any]) -> None:
    """The same cases as the page's fold (frontend/src/ai/fold.contract.test.ts): a snapshot of a
    stream means the same text, questions and token count wherever it is made."""
    log = await make_log()
    stream_id = "fold-" + secrets.token_hex(4)
    await log.create(stream_id, "owner", case["events"][0]["data"]["block_type"])
    folds = builtin_registry()[case["events"][0]["data"]["block_type"]].event_folds  # as the manager passes them
    for event in case["events"]:
        await log.append(stream_id, event["type"], event["data"], folds.get(event["type"], Fold.NOTHING))
    state, _ = await log.snapshot(stream_id)
    info = await log.info(stream_id)
    assert info is not None
    expected = case["expected"]
    got = {"text": state["text"], "questions": state["questions"], "output_tokens": state["output_tokens"]}
    assert got == {k: expected[k] for k in ("text", "questions", "output_tokens")}
    assert info.status == expected["status"]
