"""``AIBlocks``: live AI blocks added to a Quart app, the way Flask extensions are added.

    ai = AIBlocks()
    ai.register_block(Block(name="flashcards", ...))   # or @ai.block(...)
    ai.init_app(app, url_prefix="/ai")                 # or AIBlocks(app, url_prefix="/ai")

``init_app`` reads the settings from ``app.config`` (keys ``AI_<NAME>``), then the
environment and ``.env``; builds the core (provider, engine, stream log, limits,
identities) and keeps it in ``app.extensions["ai_blocks"]`` (``current_ai``); and
registers one blueprint, ``ai``, at ``url_prefix``. Every request hook, the error
handler and the JSON error shape live on that blueprint, so they apply to its routes
only. What still reaches the host app, and why:

- ``before_serving`` / ``after_serving``: the provider starts with the server and every
  stream is ended, the log and limits closed, when it stops.
- two ASGI wrappers that act on paths under ``url_prefix`` only: the send timeout that
  drops a reader who stopped reading, and (with ``PROXY_TRUSTED_HOPS``) the proxy fix.
- the WebSocket connection class, when the host uses Quart's own: a subclass that cancels
  a cancelled connection's tasks (Quart leaves them pending); for paths under
  ``url_prefix`` only, others behave exactly as before.
- quart-schema: our routes validate with it. A host that uses it keeps its own (our routes
  join its OpenAPI document); otherwise one is added whose document, at
  ``<url_prefix>/openapi.json``, lists our routes only. It replaces ``app.json`` with its
  subclass of Quart's provider (same output for everything but pydantic models and
  dataclasses, which it can also serialise).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart, has_websocket_context, request, websocket
from quart.asgi import ASGIHTTPConnection, ASGIWebsocketConnection
from quart_schema import QuartSchema
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import Rule

from . import blueprints, headers, security
from .asgi import HTTPConnection, SendTimeoutMiddleware, WebsocketConnection
from .config import Settings, load_settings
from .engine import Block, BlockRegistry, Engine
from .errors import StrictJSON, json_bodies_only, register_error_handlers
from .identity import Identities, address_key, current_identity, set_new_session_cookie
from .limits import Limits
from .logging import install_request_logging, register_secrets, route_to_stdlib
from .providers import Provider, make_provider
from .state import EXTENSION_KEY, Services, services_of
from .streams.log import MemoryStreamLog, StreamLog
from .streams.manager import StreamManager

log = logging.getLogger(__name__)

#: Seconds a client may take to send a request body to our routes.
BODY_TIMEOUT_S = 10


def make_stream_log(settings: Settings) -> StreamLog:
    """The log ``STREAM_LOG`` names: in memory for one process, Redis Streams for many."""
    if settings.STREAM_LOG == "redis":
        from .streams.redis import RedisStreamLog

        return RedisStreamLog(settings)
    return MemoryStreamLog(settings.STREAM_HISTORY_SIZE, settings.STREAM_RETENTION_S, settings.COALESCE_MAX_TOKENS)


async def _client_key() -> str:
    """The start rate limit's key: the caller's identity (session or API key)."""
    return current_identity().owner


async def _ip_key() -> str:
    """The per-address start rate limit's key, IPv6 by /64 (behind proxies, set PROXY_TRUSTED_HOPS)."""
    connection = websocket if has_websocket_context() else request
    return "ip:" + address_key(connection.remote_addr)


def _under(prefix: str) -> Callable[[str], bool]:
    if not prefix:
        return lambda path: True
    return lambda path: path == prefix or path.startswith(prefix + "/")


class _PathScoped:
    """Send requests under the prefix through ``wrapped`` (our middleware), others straight on."""

    def __init__(self, app: Any, wrapped: Any, prefix: str) -> None:
        self.app, self.wrapped, self.ours = app, wrapped, _under(prefix)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.ours(scope.get("path", "")):
            await self.wrapped(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class _SocketScheme:
    """Under the proxy fix: a socket's scheme stays ``ws``/``wss``. A TLS proxy forwards a wss
    handshake with ``X-Forwarded-Proto: https`` (the scheme it was reached by); as ``https``
    Werkzeug's routing takes it for an HTTP request and refuses it (400), and the cookie would
    not be ``Secure``. Issue #18."""

    SCHEMES = {"http": "ws", "https": "wss"}

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope.get("scheme") in self.SCHEMES:
            scope = {**scope, "scheme": self.SCHEMES[scope["scheme"]]}
        await self.app(scope, receive, send)


class _OwnRoutesOpenAPI(OpenAPIProvider):
    """The OpenAPI document of a quart-schema we added ourselves: our routes only."""

    prefix_endpoint = blueprints.NAME + "."

    def generate_rules(self) -> Iterable[Rule]:
        for rule in super().generate_rules():
            if rule.endpoint.startswith(self.prefix_endpoint):
                yield rule


class AIBlocks:
    """The extension. One object may serve several apps; each gets its own state."""

    def __init__(
        self,
        app: Quart | None = None,
        *,
        url_prefix: str = "",
        settings: Settings | None = None,
        provider: Provider | None = None,
        stream_log: StreamLog | None = None,
        builtin_blocks: bool = True,
    ) -> None:
        self.blocks = BlockRegistry()
        if builtin_blocks:
            from .blocks import BUILTIN_BLOCKS

            for block in BUILTIN_BLOCKS:
                self.register_block(block)
        if app is not None:
            self.init_app(app, url_prefix=url_prefix, settings=settings, provider=provider, stream_log=stream_log)

    def register_block(self, block: Block) -> Block:
        """Serve ``block`` on every app this extension is added to from now on. A bad
        definition or a taken name raises ``BlockDefinitionError`` here."""
        return self.blocks.register(block)

    def block(self, name: str, **fields: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """``@ai.block("flashcards", system_prompt=..., result_model=...)`` on the shaper factory
        (a callable taking the ``BlockRequest``, returning a shaper)."""

        def decorate(shaper: Callable[..., Any]) -> Callable[..., Any]:
            self.register_block(Block(name=name, shaper=shaper, **fields))
            return shaper

        return decorate

    def init_app(
        self,
        app: Quart,
        *,
        url_prefix: str = "",
        settings: Settings | None = None,
        provider: Provider | None = None,
        stream_log: StreamLog | None = None,
    ) -> None:
        """Add the blocks to ``app`` at ``url_prefix``. ``settings`` default to ``app.config``,
        the environment and ``.env``; ``provider`` and ``stream_log`` to what the settings name
        (tests pass their own)."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"AIBlocks was already added to the app {app.name!r}")
        prefix = url_prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"url_prefix must start with '/': {url_prefix!r}")
        settings = settings or load_settings(config=app.config)
        route_to_stdlib()
        provider = provider or make_provider(settings)
        stream_log = stream_log or make_stream_log(settings)
        registry = self.blocks.copy()  # blocks registered later reach only apps added later
        engine = Engine(settings, provider, registry)
        limits = Limits.for_settings(settings, getattr(stream_log, "client", None))  # Redis: the log's client
        manager = StreamManager(settings, engine, stream_log, limits)
        secret_key = settings.SECRET_KEY or secrets.token_urlsafe(32)  # one instance only: see identity.py
        register_secrets(secret_key, settings.OPENAI_API_KEY, *settings.api_keys)
        origins = security.OriginPolicy(settings)
        app.extensions[EXTENSION_KEY] = Services(
            settings, provider, engine, manager, Identities(settings, secret_key), limits, origins, registry, prefix
        )

        bp = blueprints.make_blueprint(settings, prefix)
        # hooks run in this order: request id, cross-site check, JSON-only bodies, start rate limits
        install_request_logging(bp)
        security.install(bp, origins)
        bp.before_request(json_bodies_only(StrictJSON(app, settings.MAX_BODY_BYTES), BODY_TIMEOUT_S))
        limits.install(bp, _client_key, _ip_key)
        bp.after_request(set_new_session_cookie)
        headers.install(bp, settings)  # CSP default-src 'none', nosniff, Referrer-Policy, HSTS over https
        register_error_handlers(bp)
        self._ensure_schema(app, prefix)
        app.register_blueprint(bp)
        self._wrap_asgi(app, settings, manager, prefix)

        @app.before_serving
        async def _start() -> None:
            start = getattr(provider, "start", None)
            if start is not None:
                await start()
            log.info("serving with provider %s (%s)", provider.info.name, provider.info.model)

        @app.after_serving
        async def _stop() -> None:
            await manager.shutdown()
            await provider.aclose()
            await limits.close()  # before the log: with Redis they share its client
            await stream_log.close()

    @staticmethod
    def _ensure_schema(app: Quart, prefix: str) -> None:
        if "QUART_SCHEMA" in app.extensions:
            return  # the host's own: our routes join its document
        QuartSchema(
            app,
            info={"title": "Live AI blocks", "version": "1.0.0"},  # type: ignore[arg-type]
            openapi_path=f"{prefix}/openapi.json",
            openapi_provider_class=_OwnRoutesOpenAPI,
            swagger_ui_path=None,
            redoc_ui_path=None,
            scalar_ui_path=None,
            conversion_preference="pydantic",
        )

    @staticmethod
    def _wrap_asgi(app: Quart, settings: Settings, manager: StreamManager, prefix: str) -> None:
        inner = app.asgi_app
        ours: Any = SendTimeoutMiddleware(
            inner, settings.SEND_TIMEOUT_S, manager.metrics.readers_dropped.labels("send_timeout").inc
        )
        if settings.PROXY_TRUSTED_HOPS:
            sockets: Any = _SocketScheme(ours)
            ours = ProxyFixMiddleware(sockets, mode="legacy", trusted_hops=settings.PROXY_TRUSTED_HOPS)
        app.asgi_app = _PathScoped(inner, ours, prefix)  # type: ignore[method-assign,assignment]
        if app.asgi_http_class is ASGIHTTPConnection:
            app.asgi_http_class = HTTPConnection.scoped(_under(prefix))
        if app.asgi_websocket_class is ASGIWebsocketConnection:
            app.asgi_websocket_class = WebsocketConnection.scoped(_under(prefix))


__all__ = ("AIBlocks", "services_of")
