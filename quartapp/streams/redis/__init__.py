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

Besides those: ``ail:{id}:private`` (hash, private records), ``ail:{id}:readers`` (reader
presence), ``ail:alias:<digest>`` (a client's name for its stream), ``ail:fence`` (the lease
tokens' counter), ``ail:wake:<instance>`` (wakes that instance's poller), and the pub/sub
channel ``ail:stop``. Every name is made in :mod:`.shared`.

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

Modules, one job each, sharing one client (:class:`.shared.Shared`):

- :mod:`.scripts`     the Lua scripts, and one call per script naming its KEYS and ARGV
- :mod:`.writer`      create, append, re-base, lease renewal: the streams this instance produces
- :mod:`.tail`        read, wait, info, snapshot; the poller, and the producer_lost check
- :mod:`.control`     stop requests, reader presence, aliases, private records, epochs, health
- :mod:`.connection`  the client: timeouts, retries, a cancel-safe send
- :mod:`.stream_log`  :class:`RedisStreamLog`, which owns the client and composes the three
"""

from .connection import SOCKET_TIMEOUT_S
from .shared import PREFIX
from .stream_log import RedisStreamLog
from .writer import APPEND_RETRY_S

__all__ = ["APPEND_RETRY_S", "PREFIX", "SOCKET_TIMEOUT_S", "RedisStreamLog"]
