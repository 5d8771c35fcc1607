"""Cross-site protection: who may open the socket and start generation, and CORS.

Routes marked :func:`starts_generation` (and :func:`cross_site_checked`) and the
WebSocket handshake check, before anything else runs:

- ``Origin`` (when present) against an exact allow-list: ``ALLOWED_ORIGINS``, or
  when that is empty the request's own origin (scheme + ``Host``); plus
  ``CORS_ORIGINS``. No substring, suffix or wildcard matching; ``null`` never matches.
- ``Sec-Fetch-Site`` (when present): ``same-origin`` and ``none`` pass,
  ``same-site`` only with an allowed ``Origin``, ``cross-site`` only with an
  ``Origin`` listed in ``CORS_ORIGINS`` (an explicit opt-in), anything else fails.

A refusal is ``403 {"error": {"code": "origin_not_allowed", ...}}``; for the socket
the handshake itself is refused (HTTP 403 with that body: nothing is accepted).

CORS is off unless ``CORS_ORIGINS`` is set; then an allowed ``Origin`` is echoed
exactly, with ``Access-Control-Allow-Credentials: true`` and ``Vary: Origin``,
never ``*``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from quart import Blueprint, Response, current_app, request
from werkzeug.datastructures import Headers

from .config import Settings, normalize_origin
from .errors import APIError
from .headers import optional_header
from .state import unproxied

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

CROSS_SITE_CHECKED = "_ail_cross_site_checked"
STARTS_GENERATION = "_ail_starts_generation"


def cross_site_checked(func: F) -> F:
    """Mark a view: refuse it to other sites (state-changing routes)."""
    setattr(func, CROSS_SITE_CHECKED, True)
    return func


def starts_generation(func: F) -> F:
    """Mark a view that starts a model call: cross-site checked and counted by the start rate limit."""
    setattr(func, CROSS_SITE_CHECKED, True)
    setattr(func, STARTS_GENERATION, True)
    return func


def marked(endpoint: str | None, attribute: str) -> bool:
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return bool(view is not None and getattr(view, attribute, False))


class OriginPolicy:
    def __init__(self, settings: Settings) -> None:
        self.allowed = settings.allowed_origins
        self.cors = settings.cors_origins

    def own_origin(self, scheme: str, host: str) -> str | None:
        scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        return normalize_origin(f"{scheme}://{host}") if host else None

    def _allowed(self, origin: str, scheme: str, host: str) -> bool:
        """``ALLOWED_ORIGINS`` (else the request's own origin, worked out only when an Origin
        came: most requests have none) or ``CORS_ORIGINS``."""
        if origin in self.cors:
            return True
        return origin in self.allowed if self.allowed else origin == self.own_origin(scheme, host)

    def refusal(self, headers: Headers, scheme: str, host: str) -> str | None:
        """Why this request must be refused, or None when it may go on."""
        raw_origin = optional_header(headers, "Origin")
        origin = normalize_origin(raw_origin) if raw_origin is not None else None
        if raw_origin is not None and (origin is None or not self._allowed(origin, scheme, host)):
            return "origin not allowed"
        site = optional_header(headers, "Sec-Fetch-Site")
        if site is None:
            return None
        site = site.strip().lower()
        if site in ("same-origin", "none"):
            return None
        if site == "same-site":
            if origin is not None and self._allowed(origin, scheme, host):
                return None
            return "same-site request without an allowed origin"
        if site == "cross-site":
            return None if origin is not None and origin in self.cors else "cross-site request"
        return "unknown Sec-Fetch-Site"

    def check(self, headers: Headers, scheme: str, host: str) -> None:
        """Raise ``403 origin_not_allowed`` for a request another site made."""
        reason = self.refusal(headers, scheme, host)
        if reason is not None:
            log.info(
                "cross-site request refused: %s",
                reason,
                extra={"origin": (headers.get("Origin") or "")[:100], "fetch_site": headers.get("Sec-Fetch-Site")},
            )
            raise APIError(403, "origin_not_allowed", f"this site does not accept the request ({reason})", "Origin")


CORS_HEADERS = "Content-Type, Authorization, Last-Event-ID"
CORS_EXPOSE = "Retry-After, X-Request-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"


def install(target: Blueprint, policy: OriginPolicy) -> None:
    """The cross-site check and CORS, on the extension's blueprint: its routes only."""

    @target.before_request
    async def _cross_site_check() -> None:
        served = unproxied(request)  # the proxy once: a read through it costs about 1 us
        if served.method == "OPTIONS":
            return  # a preflight carries no credentials and starts nothing; CORS answers it
        if marked(served.endpoint, CROSS_SITE_CHECKED):
            policy.check(served.headers, served.scheme, served.host)

    if not policy.cors:
        return

    @target.after_request
    async def _cors(response: Response) -> Response:
        response.vary.add("Origin")
        raw = request.headers.get("Origin")
        origin = normalize_origin(raw) if raw else None
        if origin is None or origin not in policy.cors:
            return response
        response.headers["Access-Control-Allow-Origin"] = raw.strip() if raw else origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response
