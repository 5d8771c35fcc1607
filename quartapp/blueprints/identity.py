"""Who is asking: the owner key every stream is bound to (see ``quartapp.identity``)."""

from __future__ import annotations

from quartapp.identity import current_identity


def owner_id() -> str:
    """The caller's owner id: a hash of its session or API key. Raises ``IdentityError`` (401) for a bad key."""
    return current_identity().owner


def client_address() -> str | None:
    """The caller's address key for the per-address caps; None for an API-key client (exempt)."""
    return current_identity().address
