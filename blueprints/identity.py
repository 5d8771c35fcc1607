"""Who is asking: the owner key every stream is bound to."""

from __future__ import annotations


def owner_id() -> str:
    """The caller's identity. One shared owner until sessions and API keys are configured."""
    return ""
