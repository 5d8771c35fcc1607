"""What the writer, the tail and the control of one ``RedisStreamLog`` share.

One client and its scripts, the key layout (every key name is made here), the settings in
the units Redis takes, and whether the log was closed (the background loops stop then).
"""

from __future__ import annotations

import hashlib
import secrets

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...config import Settings
from ..log import LogUnavailable
from .scripts import Scripts, StreamKeys

PREFIX = "ail:"

#: Errors a Redis call may end with while Redis is down or slow: retried, or LogUnavailable.
TRANSIENT = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


def unavailable(exc: BaseException) -> LogUnavailable:
    """The error a caller gets for a failed Redis call (its cause is for our logs)."""
    return LogUnavailable(f"redis: {type(exc).__name__}: {exc}")


class Shared:
    """One instance's view of Redis: the client, its keys, its settings, and ``closed``."""

    __slots__ = (
        "client",
        "closed",
        "history",
        "instance",
        "lease_ms",
        "lease_s",
        "prefix",
        "retention_ms",
        "safety_ms",
        "scripts",
        "slice",
    )

    def __init__(self, client: aioredis.Redis, settings: Settings, prefix: str) -> None:
        self.history = settings.STREAM_HISTORY_SIZE
        self.retention_ms = max(int(settings.STREAM_RETENTION_S * 1000), 1)
        self.lease_s = settings.PRODUCER_LEASE_S
        self.lease_ms = max(int(settings.PRODUCER_LEASE_S * 1000), 100)
        self.safety_ms = int((settings.STREAM_DEADLINE_S + settings.STREAM_RETENTION_S + 60) * 1000)
        self.slice = min(2.0, max(0.2, settings.PRODUCER_LEASE_S / 2))  # a waiter checks Redis this often
        self.prefix = prefix
        self.instance = secrets.token_hex(6)  # this process's log: lease tokens, the wake stream
        self.client = client
        self.scripts = Scripts(client)
        self.closed = False

    # -- keys: the layout the package docstring describes --------------------

    def keys(self, stream_id: str) -> StreamKeys:
        base = f"{self.prefix}{{{stream_id}}}:"
        return StreamKeys(base + "events", base + "meta", base + "text", base + "questions", base + "lease")

    def epoch_key(self, epoch: str) -> str:
        return f"{self.prefix}epoch:{epoch}"

    @property
    def fence_key(self) -> str:
        return self.prefix + "fence"

    @property
    def stop_channel(self) -> str:
        return self.prefix + "stop"

    @property
    def wake_key(self) -> str:
        return f"{self.prefix}wake:{self.instance}"

    def alias_key(self, owner: str, name: str) -> str:
        digest = hashlib.sha256(f"{owner}\0{name}".encode()).hexdigest()[:32]  # any owner, any name: one short key
        return f"{self.prefix}alias:{digest}"

    def private_key(self, stream_id: str) -> str:
        return f"{self.prefix}{{{stream_id}}}:private"

    def readers_key(self, stream_id: str) -> str:
        return f"{self.prefix}{{{stream_id}}}:readers"
