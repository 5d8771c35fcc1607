"""Browser-grade response headers: what a browser may load, run, frame and remember (issue #18).

A Content-Security-Policy per kind of response, each ending in ``frame-ancestors`` from
``FRAME_ANCESTORS`` (default ``'none'``: nobody may put us in a frame):

- **the page** (:func:`page_policy`): everything from our own origin and nothing else. Scripts
  from ``'self'`` only: no inline script, no ``eval``. Styles from ``'self'`` plus one nonce
  made per response (the page is served with it substituted, see ``blueprints/pages.py``),
  which only Mermaid's sheet uses (``frontend/src/components/mermaidRender.ts`` explains how a
  diagram is drawn without any inline style). ``connect-src 'self'`` covers the page's fetch,
  EventSource and its WebSocket (CSP 3 lets ``'self'`` match ``ws:``/``wss:`` on our own host and
  port); ``img-src`` adds ``data:`` for the page's empty favicon.
- **the API** (:data:`API_POLICY`): JSON and SSE are read by script, never rendered as a document,
  so they may load nothing: ``default-src 'none'``.
- **the docs** (:data:`DOCS_POLICY`, ``blueprints/docs.py``): Swagger UI from our own package.

Every response also gets ``X-Content-Type-Options: nosniff`` (a JSON body is never run as a
script nor shown as HTML), ``Referrer-Policy: strict-origin-when-cross-origin`` (a link in a
model's answer tells the other site our origin only, never a path; ``no-referrer`` would be
stricter but makes browsers send ``Origin: null`` on the page's own POSTs, which the
cross-site check in ``security.py`` rightly refuses), and, when the request came over HTTPS
(``request.scheme``: directly, or through the proxies ``PROXY_TRUSTED_HOPS`` trusts),
``Strict-Transport-Security: max-age=HSTS_MAX_AGE_S`` (0: none). Over plain HTTP HSTS means
nothing and is not sent.

The headers are set once per response, by an ``after_request`` hook on the blueprint (its
routes only) or the standalone app: before a streamed body's first byte, nothing per token.
A response that brings its own policy (the page's, with its nonce) keeps it.
"""

from __future__ import annotations

import secrets

from quart import Blueprint, Quart, Response, request
from werkzeug.datastructures import Headers

from .config import Settings

#: The page's nonce as the build writes it (Vite's ``html.cspNonce``); replaced per response.
BUILD_NONCE_MARK = "__CSP_NONCE__"

#: For responses no browser renders: JSON, SSE, errors, the page's assets.
API_POLICY = "default-src 'none'"

#: Swagger UI: its script, sheet and the document from us; ``data:`` for the icons in its sheet.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'"
)


def new_nonce() -> str:
    """128 random bits, URL-safe base64 (all characters a CSP nonce may hold)."""
    return secrets.token_urlsafe(16)


def page_policy(nonce: str) -> str:
    """The page's policy (without ``frame-ancestors``, which :func:`install` adds)."""
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'"
    )


def with_frame_ancestors(policy: str, settings: Settings) -> str:
    return f"{policy}; frame-ancestors {settings.frame_ancestors}"


def install(target: Quart | Blueprint, settings: Settings, policy: str = API_POLICY) -> None:
    """Set the headers on every response of ``target`` (a blueprint: its own routes only);
    ``policy`` is the CSP of responses that do not bring their own."""
    csp = with_frame_ancestors(policy, settings)
    hsts = f"max-age={settings.HSTS_MAX_AGE_S}" if settings.HSTS_MAX_AGE_S else None

    async def _browser_headers(response: Response) -> Response:
        # async although it awaits nothing: a sync hook would run in a thread, on every request
        # Werkzeug's ``in`` and ``setdefault`` find a missing header by raising and catching an
        # HTTP exception, 2-3 us each on every response: looked up without one here.
        headers = response.headers
        if optional_header(headers, "X-Content-Type-Options") is not None:
            return response  # set already: the standalone app installs this app-wide and on the blueprint
        if optional_header(headers, "Content-Security-Policy") is None:
            headers.add("Content-Security-Policy", csp)
        headers.add("X-Content-Type-Options", "nosniff")  # absent: looked up above
        headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
        if hsts is not None and request.scheme == "https":
            headers["Strict-Transport-Security"] = hsts
        return response

    target.after_request(_browser_headers)


def optional_header(headers: Headers, name: str) -> str | None:
    """``headers.get(name)`` for a header a request or a response usually lacks (``Authorization``,
    ``Origin``, ``Sec-Fetch-Site``, ``X-Request-ID``; ``Cache-Control``): Werkzeug's ``get`` finds a
    missing header by raising and catching a ``BadRequestKeyError`` (an HTTP exception built each
    time), about 2 us; this looks the same way (case-insensitive, the first value) without it."""
    values = headers.getlist(name)
    return values[0] if values else None
