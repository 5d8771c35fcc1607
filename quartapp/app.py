"""The app factory: settings in, a configured Quart app out."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart, current_app, has_websocket_context, request, websocket
from quart_schema import QuartSchema

from . import security
from .asgi import SendTimeoutMiddleware, WebsocketConnection
from .config import Settings, load_settings
from .engine import Engine
from .errors import JSONErrorRequest, StrictJSONProvider, register_error_handlers
from .identity import Identities, current_identity, set_new_session_cookie
from .limits import Limits
from .logging import install_request_logging, register_secrets, route_to_stdlib
from .providers import Provider, make_provider
from .streams.log import MemoryStreamLog, StreamLog
from .streams.manager import StreamManager

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    """The core objects a blueprint may call; one per app."""

    settings: Settings
    provider: Provider
    engine: Engine
    streams: StreamManager
    identities: Identities
    limits: Limits
    origins: security.OriginPolicy


def services() -> Services:
    """The current app's services (inside a request or websocket context)."""
    value: Services = current_app.extensions["quartapp"]
    return value


async def _client_key() -> str:
    """The start rate limit's key: the caller's identity (session or API key)."""
    return current_identity().owner


async def _ip_key() -> str:
    """The per-address start rate limit's key (behind proxies, set PROXY_TRUSTED_HOPS)."""
    connection = websocket if has_websocket_context() else request
    return "ip:" + (connection.remote_addr or "unknown")


def make_stream_log(settings: Settings) -> StreamLog:
    """The log ``STREAM_LOG`` names: in memory for one process, Redis Streams for many."""
    if settings.STREAM_LOG == "redis":
        from .streams.redis_log import RedisStreamLog

        return RedisStreamLog(settings)
    return MemoryStreamLog(settings.STREAM_HISTORY_SIZE, settings.STREAM_RETENTION_S, settings.COALESCE_MAX_TOKENS)


def create_app(
    settings: Settings | None = None, provider: Provider | None = None, stream_log: StreamLog | None = None
) -> Quart:
    """Build the app. ``provider`` and ``stream_log`` default to what the settings name;
    tests pass their own to substitute parts without monkeypatching."""
    from blueprints import register_blueprints

    settings = settings or load_settings()
    route_to_stdlib()
    provider = provider or make_provider(settings)
    stream_log = stream_log or make_stream_log(settings)
    engine = Engine(settings, provider)
    limits = Limits.for_settings(settings)
    manager = StreamManager(settings, engine, stream_log, limits)
    secret_key = settings.SECRET_KEY or secrets.token_urlsafe(32)  # one instance only: see identity.py
    register_secrets(secret_key, settings.OPENAI_API_KEY, *settings.api_keys)
    identities = Identities(settings, secret_key)
    origins = security.OriginPolicy(settings)

    app = Quart(__name__, static_folder=None)
    app.request_class = JSONErrorRequest
    app.asgi_websocket_class = WebsocketConnection
    app.config.update(
        MAX_CONTENT_LENGTH=settings.MAX_BODY_BYTES,
        BODY_TIMEOUT=10,  # seconds a client may take to send a body
    )
    app.extensions["quartapp"] = Services(settings, provider, engine, manager, identities, limits, origins)
    # hooks run in this order: request id, cross-site check, JSON-only bodies, start rate limits
    install_request_logging(app)
    security.install(app, origins)
    QuartSchema(
        app,
        info={"title": "Live AI interaction layer", "version": "1.0.0"},  # type: ignore[arg-type]
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        conversion_preference="pydantic",
    )
    app.json = StrictJSONProvider(app)  # after QuartSchema, whose provider it wraps
    register_error_handlers(app)
    limits.install(app, _client_key, _ip_key)
    app.after_request(set_new_session_cookie)
    register_blueprints(app, settings)
    app.asgi_app = SendTimeoutMiddleware(  # type: ignore[method-assign,assignment]
        app.asgi_app, settings.SEND_TIMEOUT_S, manager.metrics.readers_dropped.labels("send_timeout").inc
    )
    if settings.PROXY_TRUSTED_HOPS:
        app.asgi_app = ProxyFixMiddleware(  # type: ignore[method-assign,assignment]
            app.asgi_app, mode="legacy", trusted_hops=settings.PROXY_TRUSTED_HOPS
        )

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
        await stream_log.close()
        await limits.close()

    return app
