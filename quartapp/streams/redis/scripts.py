"""The Lua scripts of the Redis log, and one call per script that lays out its KEYS and ARGV.

Lua takes its arguments by position only; each ``*Call`` here names them, and its ``keys()``
and ``argv()`` put them in the order the script's comment gives. Python code builds a call
from named fields and reads them back by name, never as ``args[11]``. :class:`Scripts` runs
a call on the one client (EVALSHA, the script loaded on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from ..events import Fold

#: ``AppendCall.mode``: the stream's producer appends, fenced by its lease token.
PRODUCE: Literal["p"] = "p"
#: ``AppendCall.mode``: a reader ends a stream whose producer died (no lease, still at ``expected_seq``).
TAKEOVER: Literal["t"] = "t"


class StreamKeys(NamedTuple):
    """One stream's own keys (``{id}`` is a hash tag: one cluster slot)."""

    events: str
    meta: str
    text: str
    questions: str
    lease: str


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


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateCall:
    """A new stream (or a new incarnation of an old id) under a fresh epoch. Returns our lease
    token, or nil when the epoch is taken."""

    stream: StreamKeys
    epoch_key: str
    fence_key: str  # INCR: the lease token's fence, unique across instances
    owner: str
    block_type: str
    created_at: str  # repr(time.time())
    epoch: str
    instance: str
    lease_ms: int
    safety_ms: int
    stream_id: str

    def keys(self) -> list[str]:
        s = self.stream
        return [s.meta, s.events, s.text, s.questions, s.lease, self.epoch_key, self.fence_key]

    def argv(self) -> list[Any]:
        return [
            self.owner, self.block_type, self.created_at, self.epoch, self.instance, self.lease_ms,
            self.safety_ms, self.stream_id,
        ]  # fmt: skip


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


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendCall:
    """One event, with the state it folds into, the lease check and (terminal) the expiry, as one script.

    The empty defaults are the script's "nothing of this kind": no text, no question, not the end."""

    stream: StreamKeys
    epoch_key: str  # expires with the stream's keys when it ends
    mode: Literal["p", "t"]  # PRODUCE or TAKEOVER
    token: str = ""  # PRODUCE: our lease token (a lease held by anyone else fences us)
    expected_seq: int = 0  # TAKEOVER: the last_seq the stream must still be at
    append_id: str  # the script remembers the last one: a retried append is not added twice
    event_type: str
    fold: Fold  # what the event adds to the state (the fields below are its steps)
    payload: bytes  # the event's JSON
    maxlen: int  # XADD MAXLEN ~
    lease_ms: int
    text: str = ""  # appended to the text key
    tokens: int = 0  # added to output_tokens
    question: bytes = b""  # a quiz question's JSON, pushed to the questions key
    start: bytes = b""  # the start event's JSON, kept in meta
    end_status: str = ""  # set on the terminal event: the stream's final status
    ended_at: str = ""  # repr(time.time()), with end_status
    retention_ms: int  # every key's expiry once the stream ends
    safety_ms: int  # the keys' expiry while it runs
    acked: int = 0  # PRODUCE: the last seq Redis acknowledged to us (0 = unknown)

    def keys(self) -> list[str]:
        return [*self.stream, self.epoch_key]

    def argv(self) -> list[Any]:
        return [
            self.mode, self.token if self.mode == PRODUCE else self.expected_seq, self.append_id,
            self.event_type, self.payload, self.maxlen, self.lease_ms, self.text, self.tokens, self.question,
            self.start, self.end_status, self.ended_at, self.retention_ms, self.safety_ms, self.acked,
        ]  # fmt: skip


# KEYS: events meta   ARGV: after limit history.  Returns {epoch, entries} or false.
_READ = """
local m = redis.call('HMGET', KEYS[2], 'epoch', 'last_seq', 'first_seq')
if not m[1] then return false end
local last = tonumber(m[2])
local first = math.max(tonumber(ARGV[1]) + 1, last - tonumber(ARGV[3]) + 1, tonumber(m[3] or 1))
if first > last then return {m[1], {}} end
return {m[1], redis.call('XRANGE', KEYS[1], string.format('0-%d', first), '+', 'COUNT', ARGV[2])}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadCall:
    """Up to ``limit`` entries after ``after``, never older than the logical history (``first_seq``)."""

    stream: StreamKeys
    after: int
    limit: int
    history: int

    def keys(self) -> list[str]:
        return [self.stream.events, self.stream.meta]

    def argv(self) -> list[Any]:
        return [self.after, self.limit, self.history]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class RebaseCall:
    """A new incarnation of a stream whose acknowledged events Redis lost, seeded from the producer's state."""

    stream: StreamKeys
    epoch_key: str  # the new epoch's
    epoch: str
    acked: int  # the producer's last acknowledged seq: history restarts after it
    text: str
    output_tokens: int
    start: bytes  # the start event's JSON, or b""
    stream_id: str
    safety_ms: int
    questions: tuple[bytes, ...]  # each question's JSON

    def keys(self) -> list[str]:
        s = self.stream
        return [s.events, s.meta, s.text, s.questions, self.epoch_key]

    def argv(self) -> list[Any]:
        head = [self.epoch, self.acked, self.text, self.output_tokens, self.start, self.stream_id, self.safety_ms]
        return [*head, *self.questions]


# KEYS: lease meta   ARGV: token lease_ms.  1 = still ours, 0 = lost (stolen or the stream ended).
_RENEW = """
local lease = redis.call('GET', KEYS[1])
if lease == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not lease and redis.call('HGET', KEYS[2], 'status') == 'running' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
end
return 0
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewCall:
    """Keep a lease we hold (or take it back if it lapsed while the stream still runs)."""

    stream: StreamKeys
    token: str
    lease_ms: int

    def keys(self) -> list[str]:
        return [self.stream.lease, self.stream.meta]

    def argv(self) -> list[Any]:
        return [self.token, self.lease_ms]


class Scripts:
    """The five scripts registered on the one client; each method runs its call."""

    __slots__ = ("_append", "_create", "_read", "_rebase", "_renew")

    def __init__(self, client: aioredis.Redis) -> None:
        self._create = client.register_script(_CREATE)
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)
        self._renew = client.register_script(_RENEW)
        self._rebase = client.register_script(_REBASE)

    async def create(self, call: CreateCall) -> Any:
        return await self._create(call.keys(), call.argv())

    async def append(self, call: AppendCall) -> list[Any]:
        result: list[Any] = await self._append(call.keys(), call.argv())
        return result

    async def read(self, call: ReadCall) -> Any:
        return await self._read(call.keys(), call.argv())

    async def rebase(self, call: RebaseCall) -> Any:
        return await self._rebase(call.keys(), call.argv())

    async def renew(self, call: RenewCall, pipe: Pipeline) -> None:
        """Queued on ``pipe``: its reply comes with the pipeline's ``execute()``."""
        await self._renew(call.keys(), call.argv(), client=pipe)
