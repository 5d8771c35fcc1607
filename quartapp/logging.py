"""Structured logs: one JSON object per line, with the request and stream they belong to.

:func:`configure_logging` is called once by ``python -m quartapp`` (tests call it to
capture and inspect the lines). Everything ends in one handler on the root logger
whose ``structlog.stdlib.ProcessorFormatter`` renders JSON (or readable text with
``LOG_FORMAT=console``): structlog's loggers and the standard library's alike, so
Quart's, Hypercorn's (``hypercorn_config`` hands it the ``hypercorn.error`` logger,
never a handler of its own) and our modules' ``logging.getLogger`` lines share one
format. Hypercorn's access log stays off: its lines carry query strings, which hold
the one-shot route's question; :func:`install_request_logging` logs each request's
method, path (no query), status, duration and error code instead.

Context: ``request_id`` (from a well-formed ``X-Request-ID``, else new; echoed on
the response), ``stream_id`` and ``ws`` are bound with ``structlog.contextvars``;
a stream's producer task runs in a copy of the starting request's context (so it
carries that ``request_id``) with its own ``stream_id`` and without Quart's request.

Never logged: cookies, ``Authorization``, API keys, the secret key, prompt text.
The code logs lengths or short hashes only; as a last line of defence the values of
sensitive keys (``input``, ``cookie``, ...) become ``[redacted: N chars]``, and
configured secrets, bearer tokens and session cookies are cut from every rendered
line.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from quart import Blueprint, Quart, Response, g, request, websocket

from .config import Settings
from .headers import optional_header
from .state import unproxied

SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "cookies",
        "set-cookie",
        "api_key",
        "api_keys",
        "secret_key",
        "password",
        "input",
        "prompt",
        "question",
        "topic",
        "messages",
    }
)

_secrets: set[str] = set()
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_COOKIE = re.compile(r"(ail_session=)[^\s\"',;]+")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HANDLER_MARK = "_quartapp_handler"

EventDict = MutableMapping[str, Any]


def register_secrets(*values: str) -> None:
    """Strings that must never appear in a log line (keys, the secret key)."""
    _secrets.update(v for v in values if v and len(v) >= 6)


def fingerprint(text: str) -> str:
    """A short hash of a text, to follow it through the logs without logging it."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def _redact(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            value = event_dict[key]
            event_dict[key] = f"[redacted: {len(value)} chars]" if isinstance(value, str) else "[redacted]"
    return event_dict


def _scrub(logger: Any, method: str, rendered: Any) -> Any:
    if not isinstance(rendered, str):
        return rendered
    for secret in _secrets:
        if secret in rendered:
            rendered = rendered.replace(secret, "[redacted]")
    if "earer" in rendered or "EARER" in rendered:
        rendered = _BEARER.sub(r"\1[redacted]", rendered)
    if "ail_session=" in rendered:
        rendered = _COOKIE.sub(r"\1[redacted]", rendered)
    return rendered


def route_to_stdlib() -> None:
    """Until :func:`configure_logging` runs (tests, an embedding app), structlog lines become plain
    standard-library records (fields as ``extra``), never prints of structlog's own default."""
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def configure_logging(
    level: str = "INFO", fmt: str = "json", stream: TextIO | None = None, settings: Settings | None = None
) -> logging.Handler:
    """Route every log line through structlog into ``stream`` (default stderr); returns the handler.

    Idempotent: a second call replaces the handler the first one installed (and no other)."""
    if settings is not None:
        level, fmt = settings.LOG_LEVEL, settings.LOG_FORMAT
        register_secrets(settings.SECRET_KEY, settings.OPENAI_API_KEY, *settings.api_keys)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _redact,
            structlog.processors.format_exc_info,
            renderer,
            _scrub,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Hypercorn's error logger propagates here; its own handler would print plain text
    hypercorn_error = logging.getLogger("hypercorn.error")
    hypercorn_error.handlers.clear()
    hypercorn_error.propagate = True
    return handler


def _request_id(header: str | None) -> str:
    return header if header and _REQUEST_ID.match(header) else secrets.token_hex(8)


QUIET_ENDPOINTS = frozenset({"ai.health.healthz", "ai.health.readyz", "ai.health.metrics"})


def install_request_logging(target: Quart | Blueprint) -> None:
    """Bind a request id to every line logged for a request; log one line per request.

    Idempotent per request: the standalone app installs it app-wide (so an unrouted path is
    logged too) and the extension on its own blueprint; a request through both logs once.
    Nothing is cleared first: Hypercorn runs each request in a task of its own, a fresh copy
    of its connection's context, and a host app's own bound fields (bound by its hooks, which
    run before ours) stay on our lines."""
    access = structlog.get_logger("quartapp.access")
    levels = logging.getLogger("quartapp.access")  # asked first: no fields built for a line nobody logs

    @target.before_request
    async def _bind_request() -> None:
        context = unproxied(g)  # the proxy once: a read through it costs about 1 us
        if context.get("request_id") is not None:
            return
        request_id = _request_id(optional_header(request.headers, "X-Request-ID"))
        structlog.contextvars.bind_contextvars(request_id=request_id)
        context.request_id = request_id
        context.started = time.perf_counter()

    @target.after_request
    async def _log_request(response: Response) -> Response:
        context = unproxied(g)
        if context.get("request_logged"):
            return response
        context.request_logged = True
        request_id = context.get("request_id")
        if request_id is None:  # a before_request hook ahead of ours answered
            request_id = _request_id(optional_header(request.headers, "X-Request-ID"))
            structlog.contextvars.bind_contextvars(request_id=request_id)
        response.headers["X-Request-ID"] = request_id
        if response.status_code < 500 and not levels.isEnabledFor(logging.INFO):
            return response
        identity = context.get("identity")
        served = unproxied(request)
        fields: dict[str, Any] = {
            "method": served.method,
            "path": served.path[:200],
            "status": response.status_code,
            "ms": round((time.perf_counter() - context.get("started", time.perf_counter())) * 1000, 2),
            "query_chars": len(served.query_string),
            "client": identity.short if identity is not None else None,
        }
        code = context.get("error_code")
        if code is not None:
            fields["error_code"] = code
        if response.status_code >= 500:
            access.warning("request failed", **fields)  # the cause, if ours, is logged as an error
        elif response.status_code >= 400 or served.endpoint not in QUIET_ENDPOINTS:
            access.info("request" if response.status_code < 400 else "request rejected", **fields)
        else:
            access.debug("request", **fields)
        return response

    @target.before_websocket
    async def _bind_websocket() -> None:
        if g.get("request_id") is not None:  # bound by the app-wide hook already (as for requests)
            return
        request_id = _request_id(optional_header(websocket.headers, "X-Request-ID"))
        structlog.contextvars.bind_contextvars(request_id=request_id, ws=True)
        g.request_id = request_id
