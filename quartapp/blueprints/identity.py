"""Who is asking: the owner key every stream is bound to (see ``quartapp.identity``)."""

from __future__ import annotations

from quartapp.errors import APIError
from quartapp.identity import current_identity
from quartapp.state import services


def owner_id() -> str:
    """The caller's owner id: a hash of its session or API key. Raises ``IdentityError`` (401) for a bad key."""
    return current_identity().owner


def client_address() -> str | None:
    """The caller's address key for the per-address caps; None for an API-key client (exempt)."""
    return current_identity().address


def allow_answer_key(requested: bool) -> bool:
    """Whether the caller may have a quiz's answers with its questions (``QUIZ_ANSWER_KEY``);
    asking without being allowed is ``403 answer_key_forbidden``, never a silent refusal."""
    if not requested:
        return False
    policy = services().settings.QUIZ_ANSWER_KEY
    if policy == "anyone" or (policy == "api_keys" and current_identity().kind == "key"):
        return True
    raise APIError(
        403,
        "answer_key_forbidden",
        "this server gives a quiz's answers only as each question is answered"
        + (" (the answer key needs an API key)" if policy == "api_keys" else ""),
        "options.answer_key",
    )
