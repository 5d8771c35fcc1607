"""The Redis Streams log: many instances share streams, resume anywhere, stop anywhere.

Keys per stream (``{id}`` is a hash tag, so one stream's keys share a cluster slot):

- ``ail:{id}:events``  a Redis Stream. Explicit ids ``0-<seq>``, so the log's seq *is*
  the Redis id; ``XADD MAXLEN ~ STREAM_HISTORY_SIZE``.
- ``ail:{id}:meta``    hash: owner, block_type, created_at, epoch, status, ended_at,
  last_seq, output_tokens, start (JSON), append_id (the last append, for retries).
- ``ail:{id}:text`` (APPEND) and ``ail:{id}:questions`` (RPUSH JSON): the folded state
  a ``snapshot`` carries.
- ``ail:{id}:lease``   ``<instance>:<fence>``, PX ``PRODUCER_LEASE_S``: who produces it.
- ``ail:epoch:<epoch>`` -> stream id, for ``find_by_epoch``.

Every append is ONE Lua script (XADD + state + lease check), so a snapshot is always
consistent with ``last_seq`` and a fenced producer cannot write. The terminal event
sets every key to expire ``STREAM_RETENTION_S`` later; until then all keys carry a
safety TTL (deadline + retention), so a stream nobody ends is still forgotten.

History is trimmed *logically* to exactly ``STREAM_HISTORY_SIZE`` (``first_seq`` and
``read`` hide older entries) while Redis trims with ``~`` (cheap, keeps a few more):
DO NOT "fix" the read bound to XRANGE from the physical start; the memory log and
this one must agree on ``first_seq``.

Readers do not each block on Redis: one poller task per instance runs a single
``XREAD BLOCK`` (<= 2 s, below ``socket_timeout``) over every stream a local reader
waits on, keeps the recent entries, and wakes the waiters, so a thousand local
readers of a stream share one read and the same ``Entry`` bytes. A new stream joins
the poll at once through a per-instance wake stream. Waiters also check Redis every
slice (<= 2 s): a safety net for a missed wake-up, and where a dead producer is
noticed: a running stream without a lease gets ``error producer_lost`` (exactly once,
by whichever reader's script wins).

Producers renew their leases every lease/3; ``close()`` stops renewing (a stream left
running then ends with ``producer_lost``). Stop requests travel on a pub/sub channel.

Not for Redis Cluster as is: the append script also touches the epoch key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from pydantic_core import from_json, to_json
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import Settings
from .events import TERMINAL, Entry
from .log import Fenced, LogUnavailable, StopHandler, StreamInfo, StreamState

log = logging.getLogger(__name__)

PREFIX = "ail:"
POLL_BLOCK_MS = 2000  # XREAD BLOCK: below socket_timeout (redis-py#2807), a cancellation point every 2 s
SOCKET_TIMEOUT_S = 5.0
APPEND_RETRY_S = 5.0  # a producer rides out a Redis outage this long, then LogUnavailable
CREATE_RETRY_S = 2.0
ERROR_PAUSE_S = 1.0  # a reader whose Redis call failed waits this long before it heartbeats
TAIL_LINGER_S = 5.0  # keep polling a stream this long after its last local waiter left
TAIL_CACHE = 1024  # recent entries kept per polled stream (also XREAD COUNT)

_TRANSIENT = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)
T = TypeVar("T")


class _Connection(aioredis.Connection):
    """Sends under ``asyncio.timeout`` instead of redis-py's ``asyncio.wait_for``.

    On Python 3.11 ``wait_for`` drops a cancellation that arrives as the send completes
    (CPython gh-86296, fixed in 3.12): a stopped producer would then go on generating,
    and ``close()`` could hang. Seen here as a ``pubsub.subscribe()`` that ignored cancel().
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        timeout = self.socket_timeout
        if not timeout or sys.version_info >= (3, 12):
            return await super().send_packed_command(command, check_health)
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        self.socket_timeout = None  # super() then writes and drains without wait_for
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health=False)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


# KEYS: meta events text questions lease epochkey fence
# ARGV: owner block_type created_at epoch instance lease_ms safety_ms stream_id
_CREATE = """
if not redis.call('SET', KEYS[6], ARGV[8], 'NX', 'PX', ARGV[7]) then return false end
local token = ARGV[5] .. ':' .. redis.call('INCR', KEYS[7])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'block_type', ARGV[2], 'created_at', ARGV[3], 'epoch', ARGV[4],
  'status', 'running', 'ended_at', '', 'last_seq', 0, 'output_tokens', 0, 'append_id', '')
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('SET', KEYS[5], token, 'PX', ARGV[6])
return token
"""

# KEYS: events meta text questions lease epochkey
# ARGV: 1 mode (p = producer, t = takeover)  2 token | expected last_seq  3 append id  4 type  5 json
#       6 maxlen  7 lease_ms  8 text  9 tokens  10 question json  11 start json  12 end status
#       13 ended_at  14 retention_ms  15 safety_ms  16 the producer's last acknowledged seq (0 = unknown)
# Returns {seq, epoch, last_seq found}; {-1} fenced or ended; {-2} no such stream; {-3} takeover not due;
# {-4} Redis lost events it had acknowledged to this producer (the producer re-bases, see _REBASE).
_APPEND = """
local m = redis.call('HMGET', KEYS[2], 'status', 'last_seq', 'append_id', 'epoch')
if not m[1] then return {-2} end
if m[3] == ARGV[3] then return {tonumber(m[2]), m[4]} end
if m[1] ~= 'running' then return {-1} end
local lease = redis.call('GET', KEYS[5])
if ARGV[1] == 'p' then
  if lease and lease ~= ARGV[2] then return {-1} end
elseif lease or m[2] ~= ARGV[2] then
  return {-3}
end
local last = tonumber(m[2])
if ARGV[1] == 'p' and tonumber(ARGV[16]) > last then return {-4, m[4], last} end  -- Redis lost acked events
local seq = last + 1
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], string.format('0-%d', seq), 't', ARGV[4], 'd', ARGV[5])
if seq == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[15]) end
redis.call('HSET', KEYS[2], 'last_seq', seq, 'append_id', ARGV[3])
if ARGV[8] ~= '' and redis.call('APPEND', KEYS[3], ARGV[8]) == string.len(ARGV[8]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[15])
end
if ARGV[9] ~= '0' then redis.call('HINCRBY', KEYS[2], 'output_tokens', ARGV[9]) end
if ARGV[10] ~= '' and redis.call('RPUSH', KEYS[4], ARGV[10]) == 1 then redis.call('PEXPIRE', KEYS[4], ARGV[15]) end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[2], 'start', ARGV[11]) end
if ARGV[12] ~= '' then
  redis.call('HSET', KEYS[2], 'status', ARGV[12], 'ended_at', ARGV[13])
  redis.call('DEL', KEYS[5])
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[14]) end
  redis.call('PEXPIRE', KEYS[6], ARGV[14])
elseif ARGV[1] == 'p' and not lease then
  redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[7])
end
return {seq, m[4], tonumber(m[2])}
"""

# KEYS: events meta   ARGV: after limit history.  Returns {epoch, entries} or false.
_READ = """
local m = redis.call('HMGET', KEYS[2], 'epoch', 'last_seq', 'first_seq')
if not m[1] then return false end
local last = tonumber(m[2])
local first = math.max(tonumber(ARGV[1]) + 1, last - tonumber(ARGV[3]) + 1, tonumber(m[3] or 1))
if first > last then return {m[1], {}} end
return {m[1], redis.call('XRANGE', KEYS[1], string.format('0-%d', first), '+', 'COUNT', ARGV[2])}
"""

# Redis came back from an older snapshot and lost events it had acknowledged: start a new
# incarnation of the stream's log rather than a silent gap. New epoch (old cursors get a reset),
# history restarts after the hole (first_seq), and the state is re-seeded from the producer's.
# KEYS: events meta text questions new-epoch-key
# ARGV: epoch acked_last_seq text output_tokens start_json stream_id safety_ms question_json...
_REBASE = """
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[2], 'epoch', ARGV[1], 'last_seq', ARGV[2], 'first_seq', tonumber(ARGV[2]) + 1,
  'output_tokens', ARGV[4], 'append_id', '')
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'start', ARGV[5]) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[7]) end
for i = 8, #ARGV do redis.call('RPUSH', KEYS[4], ARGV[i]) end
if #ARGV >= 8 then redis.call('PEXPIRE', KEYS[4], ARGV[7]) end
redis.call('SET', KEYS[5], ARGV[6], 'PX', ARGV[7])
return 1
"""

# KEYS: lease meta   ARGV: token lease_ms.  1 = still ours, 0 = lost (stolen or the stream ended).
_RENEW = """
local lease = redis.call('GET', KEYS[1])
if lease == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not lease and redis.call('HGET', KEYS[2], 'status') == 'running' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
end
return 0
"""


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


class RedisStreamLog:
    """The stream log on Redis Streams; same behaviour as ``MemoryStreamLog``, shared by instances."""

    def __init__(self, settings: Settings, *, prefix: str = PREFIX, client: aioredis.Redis | None = None) -> None:
        self._history = settings.STREAM_HISTORY_SIZE
        self._retention_ms = max(int(settings.STREAM_RETENTION_S * 1000), 1)
        self._lease_s = settings.PRODUCER_LEASE_S
        self._lease_ms = max(int(settings.PRODUCER_LEASE_S * 1000), 100)
        self._safety_ms = int((settings.STREAM_DEADLINE_S + settings.STREAM_RETENTION_S + 60) * 1000)
        self._slice = min(2.0, max(0.2, settings.PRODUCER_LEASE_S / 2))
        self._prefix = prefix
        self._instance = secrets.token_hex(6)
        self._redis: aioredis.Redis = client or aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=2.0,
            socket_keepalive=True,
            health_check_interval=10,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.02), 1),  # retries TimeoutError too
            protocol=2,
            connection_class=_Connection,
        )
        self._create = self._redis.register_script(_CREATE)
        self._append = self._redis.register_script(_APPEND)
        self._read = self._redis.register_script(_READ)
        self._renew = self._redis.register_script(_RENEW)
        self._rebase_script = self._redis.register_script(_REBASE)
        self._produced: dict[str, str] = {}  # stream id -> our lease token
        self._acked: dict[str, int] = {}  # stream id -> the last seq Redis acknowledged to us
        self._states: dict[str, StreamState] = {}  # what we produced, to re-seed a rolled-back Redis
        self._tails: dict[str, _Tail] = {}
        self._poll_keys: frozenset[str] = frozenset()
        self._polling = False
        self._poll_wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._stop_handler: StopHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._listened = False

    # -- keys --------------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client (one connection pool): the limits share it."""
        return self._redis

    def _keys(self, stream_id: str) -> list[str]:
        """events meta text questions lease"""
        base = f"{self._prefix}{{{stream_id}}}:"
        return [base + "events", base + "meta", base + "text", base + "questions", base + "lease"]

    def _epoch_key(self, epoch: str) -> str:
        return f"{self._prefix}epoch:{epoch}"

    @property
    def _stop_channel(self) -> str:
        return self._prefix + "stop"

    @property
    def _wake_key(self) -> str:
        return f"{self._prefix}wake:{self._instance}"

    # -- producing ---------------------------------------------------------

    async def create(self, stream_id: str, owner: str, block_type: str) -> StreamInfo:
        self._start_tasks()
        keys = self._keys(stream_id)
        created_at = time.time()
        for _ in range(5):  # a fresh epoch unless it collides with a live one
            epoch = secrets.token_hex(6)
            meta_first = [keys[1], keys[0], keys[2], keys[3], keys[4], self._epoch_key(epoch), self._prefix + "fence"]
            args: list[Any] = [owner, block_type, repr(created_at), epoch, self._instance, self._lease_ms]
            args += [self._safety_ms, stream_id]
            token: Any = await self._retrying(CREATE_RETRY_S, lambda: self._create(meta_first, args))  # noqa: B023
            if token:
                break
        else:
            raise LogUnavailable("could not find a free epoch")
        self._produced[stream_id] = token.decode()
        if not self._listened:  # the first stream: a stop request must not arrive before we listen
            self._listened = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._subscribed.wait()
        return StreamInfo(stream_id, epoch, owner, block_type, created_at, 1, 0, "running", None)

    async def append(self, stream_id: str, event_type: str, data: dict[str, Any]) -> Entry:
        payload = to_json(data)
        text, tokens, question, start, status, ended_at = "", 0, b"", b"", "", ""
        if event_type == "token":
            text, tokens = data["text"], data["tokens"]
        elif event_type == "diagram.partial":
            text, tokens = data["text"], 1
        elif event_type == "quiz.question":
            question = to_json(data["question"])
        elif event_type == "start":
            start = payload
        elif event_type in TERMINAL:
            status, ended_at = data["status"], repr(time.time())
        self._start_tasks()
        token = self._produced.get(stream_id) or f"{self._instance}:0"
        keys = [*self._keys(stream_id), self._epoch_key("")]
        args: list[Any] = [
            "p", token, secrets.token_hex(8), event_type, payload, self._history, self._lease_ms,
            text, tokens, question, start, status, ended_at, self._retention_ms, self._safety_ms,
            self._acked.get(stream_id, 0),
        ]  # fmt: skip
        return await self._run_append(stream_id, keys, args, data, budget=APPEND_RETRY_S)

    async def _run_append(
        self,
        stream_id: str,
        keys: list[str],
        args: list[Any],
        data: dict[str, Any],
        budget: float,
        rebased: bool = False,
    ) -> Entry:
        async def attempt() -> list[Any]:
            if args[11] and keys[5] == self._epoch_key(""):  # terminal: the epoch key expires too
                epoch: Any = await self._redis.hget(keys[1], "epoch")
                keys[5] = self._epoch_key(epoch.decode() if epoch else "")
            result: list[Any] = await self._append(keys, args)
            return result

        try:
            result = await self._retrying(budget, attempt)
        except LogUnavailable:
            self._forget(stream_id)  # stop renewing: readers will see producer_lost
            raise
        seq = int(result[0])
        if seq == -4 and rebased is False:
            await self._rebase(stream_id, int(args[15]))
            return await self._run_append(stream_id, keys, args, data, budget, rebased=True)
        if seq == -2:
            self._forget(stream_id)
            raise LogUnavailable(f"stream {stream_id} is gone from the log (expired, or Redis lost its data)")
        if seq < 0:
            if args[0] == "p":
                self._forget(stream_id)
                raise Fenced(stream_id)
            raise _NotDue
        entry = Entry(stream_id, result[1].decode(), seq, args[3], data, json=args[4])
        if len(result) > 2 and args[15] > result[2]:
            log.warning(
                "stream %s: redis lost events %d..%d (restarted without them)", stream_id, result[2] + 1, args[15]
            )
        if args[0] == "p" and not args[11]:
            self._produced[stream_id] = args[1]
            self._acked[stream_id] = seq
            self._states.setdefault(stream_id, StreamState()).apply(args[3], data)
        elif args[11]:
            self._forget(stream_id)
        tail = self._tails.get(stream_id)
        if tail is not None and seq == tail.last_seq + 1:
            tail.push(entry)  # local readers need not wait for the poller
            tail.wake()
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
        events, meta, text, questions, _ = self._keys(stream_id)
        args: list[Any] = [
            epoch, acked, "".join(state.parts), state.output_tokens,
            to_json(state.start) if state.start else b"", stream_id, self._safety_ms,
            *(to_json(q) for q in state.questions),
        ]  # fmt: skip
        keys = [events, meta, text, questions, self._epoch_key(epoch)]

        async def rebase() -> object:
            return await self._rebase_script(keys, args)

        await self._retrying(APPEND_RETRY_S, rebase)
        log.warning("stream %s: redis lost acknowledged events; re-based as epoch %s after %d", stream_id, epoch, acked)

    async def _retrying(self, budget: float, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``; ride out connection errors with short backoff for ``budget`` s, then LogUnavailable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        delay = 0.05
        for _ in range(1000):
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.5)):
                    return await call()
            except _TRANSIENT as exc:
                if loop.time() + delay >= deadline:
                    raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        raise LogUnavailable("redis: retries exhausted")

    # -- reading -----------------------------------------------------------

    async def read(self, stream_id: str, after_seq: int, limit: int) -> list[Entry]:
        tail = self._tails.get(stream_id)
        if tail is not None and tail.entries and tail.entries[0].seq <= after_seq + 1 <= tail.last_seq:
            start = after_seq + 1 - tail.entries[0].seq
            return [tail.entries[i] for i in range(start, min(start + limit, len(tail.entries)))]
        try:
            reply = await self._read(self._keys(stream_id)[:2], [after_seq, limit, self._history])
        except _TRANSIENT as exc:
            log.debug("stream %s: read failed: %s", stream_id, exc)  # the poller warns, once per instance
            return []
        if not reply:
            return []
        epoch = reply[0].decode()
        return [_entry(stream_id, epoch, raw_id, fields) for raw_id, fields in reply[1]]

    async def wait(self, stream_id: str, after_seq: int, timeout: float) -> list[Entry]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._start_tasks()
        try:
            tail = await self._attach(stream_id)
        except _TRANSIENT as exc:
            log.debug("stream %s: wait failed: %s", stream_id, exc)  # the poller warns, once per instance
            await asyncio.sleep(min(timeout, ERROR_PAUSE_S))
            return []
        if tail is None:
            return []
        try:
            await self._join_poll(tail)
            for _ in range(int(timeout / self._slice) + 1000):
                if tail.last_seq > after_seq:
                    entries = await self.read(stream_id, after_seq, self._history)
                    if entries:
                        return entries
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                changed = tail.changed
                try:
                    async with asyncio.timeout(min(remaining, self._slice)):
                        await changed.wait()
                except TimeoutError:
                    try:
                        if not await self._check(tail, after_seq):
                            return []  # the stream is gone
                    except (*_TRANSIENT, LogUnavailable) as exc:
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
            keys = self._keys(stream_id)
            values: list[Any] = await self._redis.hmget(keys[1], ["epoch", "last_seq"])
            epoch, last = values
            if epoch is None:
                return None
            tail = self._tails.get(stream_id)
            if tail is None:
                cache = min(TAIL_CACHE, self._history)
                tail = _Tail(stream_id, keys[0], epoch.decode(), int(last), cache, asyncio.get_running_loop().time())
                self._tails[stream_id] = tail
                self._poll_wake.set()
        tail.waiters += 1  # before any other await: the poller drops tails nobody waits on
        return tail

    async def _join_poll(self, tail: _Tail) -> None:
        """A stream the running XREAD does not cover: wake the poller so it joins now, not in 2 s."""
        if not self._polling or tail.stream_id in self._poll_keys:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1)
                pipe.pexpire(self._wake_key, 60_000)
                await pipe.execute()
        except Exception as exc:  # the slice check still covers this waiter
            log.warning("redis log: could not wake the poller: %r", exc)

    async def _check(self, tail: _Tail, after_seq: int) -> bool:
        """A quiet slice: catch up if the poller missed something; end a stream whose producer died.

        False when the stream is gone."""
        now = asyncio.get_running_loop().time()
        if now - tail.checked_at < self._slice / 2:
            return True  # another waiter of this stream just checked
        tail.checked_at = now
        keys = self._keys(tail.stream_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys[1], ["status", "last_seq"])
            pipe.exists(keys[4])
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
        keys = [*self._keys(stream_id), self._epoch_key(info.epoch)]
        args: list[Any] = [
            "t", last_seq, secrets.token_hex(8), "error", to_json(data), self._history, self._lease_ms,
            "", 0, b"", b"", "interrupted", repr(time.time()), self._retention_ms, self._safety_ms, 0,
        ]  # fmt: skip
        with contextlib.suppress(_NotDue):
            await self._run_append(stream_id, keys, args, data, budget=1.0)
            log.warning("stream %s: producer lost (lease expired); ended it as interrupted", stream_id)

    async def info(self, stream_id: str) -> StreamInfo | None:
        fields = ["owner", "block_type", "created_at", "epoch", "status", "ended_at", "last_seq", "first_seq"]
        try:
            values: list[Any] = await self._redis.hmget(self._keys(stream_id)[1], fields)
        except _TRANSIENT as exc:
            raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
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
            first_seq=max(int(first or 1), last_seq - self._history + 1),
            last_seq=last_seq,
            status=status.decode(),
            ended_at=float(ended_at) if ended_at else None,
        )

    async def snapshot(self, stream_id: str) -> tuple[dict[str, Any], int]:
        _, meta, text, questions, _ = self._keys(stream_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:  # MULTI: consistent with last_seq
                pipe.hmget(meta, ["epoch", "last_seq", "start", "output_tokens"])
                pipe.get(text)
                pipe.lrange(questions, 0, -1)
                (epoch, last, start, output_tokens), text_value, question_values = await pipe.execute()
        except _TRANSIENT as exc:
            raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        if epoch is None:
            raise KeyError(stream_id)
        state = {
            "start": from_json(start) if start else None,
            "text": text_value.decode() if text_value else "",
            "questions": [from_json(q) for q in question_values],
            "output_tokens": int(output_tokens or 0),
        }
        return state, int(last)

    async def find_by_epoch(self, epoch: str) -> str | None:
        try:
            value: Any = await self._redis.get(self._epoch_key(epoch))
        except _TRANSIENT as exc:
            raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return value.decode() if value else None

    def _alias_key(self, owner: str, name: str) -> str:
        digest = hashlib.sha256(f"{owner}\0{name}".encode()).hexdigest()[:32]  # any owner, any name: one short key
        return f"{self._prefix}alias:{digest}"

    async def set_alias(self, owner: str, name: str, stream_id: str) -> None:
        try:
            await self._redis.set(self._alias_key(owner, name), stream_id, px=self._safety_ms)
        except _TRANSIENT as exc:
            raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def find_alias(self, owner: str, name: str) -> str | None:
        try:
            value: Any = await self._redis.get(self._alias_key(owner, name))
        except _TRANSIENT as exc:
            raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return value.decode() if value else None

    def _private_key(self, stream_id: str) -> str:
        return f"{self._prefix}{{{stream_id}}}:private"

    async def put_private(self, stream_id: str, name: str, value: str) -> None:
        key = self._private_key(stream_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, name, value)
                pipe.pexpire(key, self._safety_ms)  # as long as the stream's own keys, at most
                await pipe.execute()
        except _TRANSIENT as exc:
            raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def get_private(self, stream_id: str, name: str) -> str | None:
        try:
            value: Any = await self._redis.hget(self._private_key(stream_id), name)
        except _TRANSIENT as exc:
            raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return value.decode() if value else None

    async def claim_private(self, stream_id: str, name: str, value: str) -> bool:
        key = self._private_key(stream_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, name, value)
                pipe.pexpire(key, self._safety_ms)
                claimed, _ = await pipe.execute()
        except _TRANSIENT as exc:
            raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return bool(claimed)

    async def healthy(self) -> bool:
        try:
            async with asyncio.timeout(2.0):
                return bool(await self._redis.ping())
        except Exception:
            return False

    # -- stop requests -----------------------------------------------------

    async def request_stop(self, stream_id: str) -> None:
        """Our own stream: the handler now. Another's: publish, and its producer's instance stops it."""
        if stream_id in self._produced:
            self._stopped(stream_id)
            return
        try:
            await self._redis.publish(self._stop_channel, stream_id)
        except _TRANSIENT as exc:
            raise LogUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def on_stop_request(self, handler: StopHandler) -> None:
        self._stop_handler = handler

    # -- reader presence (the detach grace counts readers on every instance) --

    def _readers_key(self, stream_id: str) -> str:
        return f"{self._prefix}{{{stream_id}}}:readers"

    async def touch_reader(self, stream_id: str, ttl_s: float) -> None:
        try:
            await self._redis.set(self._readers_key(stream_id), self._instance, px=max(1, int(ttl_s * 1000)))
        except _TRANSIENT as exc:
            log.warning("redis: reader presence of %s not recorded: %s", stream_id, exc)

    async def has_readers(self, stream_id: str) -> bool:
        try:
            return bool(await self._redis.exists(self._readers_key(stream_id)))
        except _TRANSIENT:
            return True  # cannot tell: do not abandon a stream someone may be reading

    # -- background tasks --------------------------------------------------

    def _start_tasks(self) -> None:
        if self._tasks or self._closed:
            return
        for name, coro in (("poll", self._poll_loop()), ("renew", self._renew_loop()), ("stop", self._stop_loop())):
            self._tasks.append(asyncio.create_task(coro, name=f"redis-log-{name}-{self._instance}"))

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        wake_id = b"0-0"
        delay = 0.1
        while not self._closed:
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
            streams[self._wake_key] = wake_id
            self._poll_keys = frozenset(tail.stream_id for tail in tails.values())
            self._polling = True
            try:
                reply: Any = await self._redis.xread(streams, count=TAIL_CACHE, block=POLL_BLOCK_MS)
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
                if key == self._wake_key:
                    wake_id = items[-1][0]
                    continue
                tail = tails[key]
                for raw_id, fields in items:
                    tail.push(_entry(tail.stream_id, tail.epoch, raw_id, fields))
                tail.wake()

    async def _renew_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._lease_s / 3)
            leases = list(self._produced.items())
            if not leases:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for stream_id, token in leases:
                        keys = self._keys(stream_id)
                        await self._renew([keys[4], keys[1]], [token, self._lease_ms], client=pipe)
                    results = await pipe.execute()
            except Exception as exc:
                log.warning("redis log: lease renewal failed: %r", exc)
                continue
            for (stream_id, token), ok in zip(leases, results, strict=True):
                if not ok and self._produced.get(stream_id) == token:
                    self._forget(stream_id)  # its next append raises Fenced

    async def _stop_loop(self) -> None:
        """One subscriber per instance; a PING every 10 s proves the connection still delivers."""
        loop = asyncio.get_running_loop()
        delay = 0.1
        while not self._closed:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._stop_channel)
                alive = pinged = loop.time()
                while not self._closed:
                    message = await pubsub.get_message(timeout=1.0)
                    now = loop.time()
                    if message is not None:
                        alive = now
                        if message["type"] == "subscribe":
                            self._subscribed.set()
                            delay = 0.1
                        elif message["type"] == "message":
                            self._stopped(message["data"].decode())
                    if now - pinged > 10:
                        await pubsub.ping()
                        pinged = now
                    if now - alive > 15:
                        raise RedisTimeoutError("stop channel silent for 15 s")
            except Exception as exc:
                log.warning("redis log: stop channel lost: %r; resubscribing in %.1fs", exc, delay)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _stopped(self, stream_id: str) -> None:
        if self._stop_handler is not None:
            try:
                self._stop_handler(stream_id)
            except Exception:
                log.exception("stop handler failed for stream %s", stream_id)

    async def close(self) -> None:
        """Stop the background tasks and disconnect; the data stays (other instances may read it)."""
        self._closed = True
        for _ in range(10):  # bounded: a task that swallowed a cancel gets another
            pending = [task for task in self._tasks if not task.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)
        self._tasks.clear()
        self._produced.clear()
        self._acked.clear()
        self._tails.clear()
        await self._redis.aclose()


class _NotDue(Exception):
    """A takeover append found the stream alive (its lease came back) or already moved on."""
