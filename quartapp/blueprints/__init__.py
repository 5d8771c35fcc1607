"""The HTTP and WebSocket surface: each blueprint translates requests into calls on the core."""

from __future__ import annotations

from quart import Quart

from quartapp.config import Settings


def register_blueprints(app: Quart, settings: Settings) -> None:
    """Mount what the settings enable: SSE routes only with SSE, the socket only with WebSocket."""
    from . import ai_blocks, health, streams

    app.register_blueprint(health.bp)
    app.register_blueprint(streams.bp)
    app.register_blueprint(ai_blocks.bp)
    if settings.sse_enabled:
        app.register_blueprint(streams.sse_bp)
        app.register_blueprint(ai_blocks.sse_bp)
    if settings.websocket_enabled:
        from . import ws

        app.register_blueprint(ws.bp)
    from . import pages

    app.register_blueprint(pages.make_blueprint(settings))
