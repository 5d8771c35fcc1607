"""What every limit shares: the refusal, the Redis key prefix and timeout."""

from __future__ import annotations

from ..errors import APIError

PREFIX = "ail:limits:"
#: Longest wait for Redis in a limit check: a slow Redis must not hold a start for long.
REDIS_TIMEOUT_S = 2.0


class LimitExceeded(APIError):
    """A client is over one of its limits: 429 with this code."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(429, code, message, headers=headers)
        self.retry_after = retry_after
