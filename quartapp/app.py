"""The app factory: settings in, a configured Quart app out."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quart import Quart, current_app
from quart_schema import QuartSchema

from .asgi import SendTimeoutMiddleware
from .config import Settings, load_settings
from .engine import Engine
from .errors import JSONErrorRequest, register_error_handlers
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


def services() -> Services:
    """The current app's services (inside a request or websocket context)."""
    value: Services = current_app.extensions["quartapp"]
    return value


def make_stream_log(settings: Settings) -> StreamLog:
    """The log ``STREAM_LOG`` names: in memory for one process, Redis Streams for many."""
    if settings.STREAM_LOG == "redis":
        from .streams.redis_log import RedisStreamLog

        return RedisStreamLog(settings)
    return MemoryStreamLog(settings.STREAM_HISTORY_SIZE, settings.STREAM_RETENTION_S)


def create_app(
    settings: Settings | None = None, provider: Provider | None = None, stream_log: StreamLog | None = None
) -> Quart:
    """Build the app. ``provider`` and ``stream_log`` default to what the settings name;
    tests pass their own to substitute parts without monkeypatching."""
    from blueprints import register_blueprints

    settings = settings or load_settings()
    provider = provider or make_provider(settings)
    stream_log = stream_log or make_stream_log(settings)
    engine = Engine(settings, provider)
    manager = StreamManager(settings, engine, stream_log)

    app = Quart(__name__, static_folder=None)
    app.request_class = JSONErrorRequest
    app.config.update(
        MAX_CONTENT_LENGTH=settings.MAX_BODY_BYTES,
        BODY_TIMEOUT=10,  # seconds a client may take to send a body
    )
    app.extensions["quartapp"] = Services(settings, provider, engine, manager)
    QuartSchema(
        app,
        info={"title": "Live AI interaction layer", "version": "1.0.0"},  # type: ignore[arg-type]
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        conversion_preference="pydantic",
    )
    register_error_handlers(app)
    register_blueprints(app, settings)
    app.asgi_app = SendTimeoutMiddleware(  # type: ignore[method-assign,assignment]
        app.asgi_app, settings.SEND_TIMEOUT_S, manager.metrics.readers_dropped.labels("send_timeout").inc
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

    return app
