"""Who is asking: an anonymous signed session per browser, or an API key per API client.

- **Browsers** get a random session id in a cookie signed with ``SECRET_KEY``
  (itsdangerous ``TimestampSigner``): ``HttpOnly``, ``SameSite=Lax``, ``Path=/``,
  ``Secure`` when the request came over https, ``Max-Age=SESSION_MAX_AGE_S``. A
  missing, tampered or expired cookie simply gets a new identity (the caller is
  anonymous either way); the cookie is set on the response that minted it.
- **API clients** send ``Authorization: Bearer <key>`` with a key from ``API_KEYS``.
  A bearer header with any other key is ``401 invalid_api_key``: never a silent
  fallback to an anonymous session.

Anonymous callers are also counted by their **address** (:func:`address_key`): a client
that drops its cookie gets a new identity each time, but not a new address, so the
per-address caps bind it. API-key clients are known and exempt from those.

The owner a stream is bound to is a hash, ``s:`` + SHA-256 of the session id or
``k:`` + SHA-256 of the key (first 128 bits): the cookie and the key themselves are
never stored, compared as plain text, or logged.

``SECRET_KEY`` empty means a random key made at start-up: fine for one instance; a
restart then forgets every session (streams last minutes anyway). Several
instances behind one address must share one ``SECRET_KEY``, or a browser's cookie
from instance A is a stranger on instance B.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from itsdangerous import BadSignature, TimestampSigner
from quart import Response, g, has_request_context, has_websocket_context, request, websocket

from .config import Settings
from .errors import APIError
from .headers import optional_header
from .state import services, unproxied

COOKIE_NAME = "ail_session"
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16)


class IdentityError(APIError):
    """A bearer key that is not one of ours: 401, never a silent fallback to a session."""

    def __init__(self) -> None:
        super().__init__(
            401,
            "invalid_api_key",
            "the bearer key is not one this server accepts",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


@dataclass(frozen=True, slots=True)
class Identity:
    owner: str
    kind: Literal["session", "key"]
    #: The signed cookie value to set: only for a session minted by this request.
    new_cookie: str | None = None
    #: The per-address limits' key (:func:`address_key`); None for API-key clients (exempt).
    address: str | None = None

    @property
    def short(self) -> str:
        """Enough of the owner to follow one client through the logs."""
        return self.owner[:10]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class Identities:
    """Resolves the caller from the ``Authorization`` header or the session cookie."""

    def __init__(self, settings: Settings, secret_key: str) -> None:
        self._signer = TimestampSigner(secret_key, salt="ail-session")
        self.max_age = settings.SESSION_MAX_AGE_S
        self._keys = [hashlib.sha256(k.encode()).digest() for k in settings.api_keys]

    def resolve(self, authorization: str | None, cookie: str | None) -> Identity:
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                return self._from_key(token.strip())
        if cookie:
            try:
                session_id = self._signer.unsign(cookie, max_age=self.max_age).decode("ascii")
            except (BadSignature, UnicodeDecodeError):
                session_id = ""
            if _SESSION_ID.match(session_id):
                return Identity("s:" + _digest(session_id), "session")
        session_id = secrets.token_urlsafe(16)
        return Identity("s:" + _digest(session_id), "session", self._signer.sign(session_id).decode("ascii"))

    def _from_key(self, key: str) -> Identity:
        presented = hashlib.sha256(key.encode("utf-8", "replace")).digest()
        matched = False
        for known in self._keys:  # compare with every key, in constant time each
            matched |= hmac.compare_digest(presented, known)
        if not key or not matched:
            raise IdentityError()
        return Identity("k:" + presented.hex()[:32], "key")


@functools.lru_cache(maxsize=4096)  # parsed once per address, not per request (a classroom is one)
def address_key(remote_addr: str | None) -> str:
    """The key a client address is counted under: an IPv4 address as it is, an IPv6 address by
    its /64 (what one subscriber or one host is given: hopping addresses inside it is free)."""
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%", 1)[0])
    except ValueError:
        return "a:" + (remote_addr or "unknown")[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"a:{address.ipv4_mapped}"
        return f"a:{ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"a:{address}"


def current_identity() -> Identity:
    """The caller of the current request or websocket (resolved once, then kept on ``g``).

    Raises :class:`IdentityError` for a bearer key that is not configured."""
    context = unproxied(g)  # the proxies once each: a read through one costs about 1 us
    identity: Identity | None = context.get("identity")
    if identity is None:
        connection = unproxied(websocket if has_websocket_context() else request)
        identity = services().identities.resolve(
            optional_header(connection.headers, "Authorization"), connection.cookies.get(COOKIE_NAME)
        )
        if identity.kind == "session":
            identity = Identity(identity.owner, identity.kind, identity.new_cookie, address_key(connection.remote_addr))
        context.identity = identity
    return identity


def is_secure(scheme: str) -> bool:
    """Whether the connection came over TLS (directly, or as a trusted proxy said): a socket's
    scheme is ``wss``, but a host app's own proxy fix may leave it ``https``."""
    return scheme in ("https", "wss")


def cookie_header(identity: Identity, secure: bool, max_age: int) -> str:
    """The ``Set-Cookie`` value for a newly minted session."""
    assert identity.new_cookie is not None
    parts = [f"{COOKIE_NAME}={identity.new_cookie}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def new_session_headers() -> dict[str, str]:
    """Headers for a WebSocket accept: the cookie, when this handshake minted the session."""
    identity = g.get("identity")
    if identity is None or identity.new_cookie is None:
        return {}
    return {"Set-Cookie": cookie_header(identity, is_secure(websocket.scheme), services().identities.max_age)}


async def set_new_session_cookie(response: Response) -> Response:
    """``after_request``: set the cookie of a session this request minted.

    Async although it awaits nothing: Quart runs a sync hook in a thread pool, a thread
    hop (and GIL contention) on every request."""
    if not has_request_context():
        return response
    identity: Identity | None = unproxied(g).get("identity")
    if identity is not None and identity.new_cookie is not None:
        secure = is_secure(request.scheme)
        response.headers.add("Set-Cookie", cookie_header(identity, secure, services().identities.max_age))
        cache = optional_header(response.headers, "Cache-Control") or ""  # no exception for a miss
        if "private" not in cache and "no-store" not in cache:
            # a shared cache must never hand one browser's cookie to another
            response.headers["Cache-Control"] = "private" + (f", {cache}" if cache else "")
    return response
