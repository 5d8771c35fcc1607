"""The HTTP and WebSocket surface: each blueprint translates requests into calls on the core.

:func:`make_blueprint` nests them under one blueprint, ``ai``, mounted at the extension's
``url_prefix``: its request hooks and its error handler apply to these routes only.
"""

from __future__ import annotations

from quart import Blueprint

from quartapp.config import Settings

#: The parent blueprint's name: endpoints are ``ai.streams.start``, ``ai.ws.streams_socket``, ...
NAME = "ai"


def make_blueprint(settings: Settings, url_prefix: str) -> Blueprint:
    """The extension's routes for one app: SSE routes only with SSE, the sockets only with
    WebSocket (``STREAMING_BACKEND``), metrics only with ``METRICS_ENABLED``, health always."""
    from . import ai_blocks, contract, health, streams

    parent = Blueprint(NAME, __name__, url_prefix=url_prefix or None)
    parent.register_blueprint(health.bp)
    parent.register_blueprint(contract.bp)
    parent.register_blueprint(streams.bp)
    parent.register_blueprint(ai_blocks.bp)
    if settings.METRICS_ENABLED:
        from . import metrics

        parent.register_blueprint(metrics.bp)
    if settings.sse_enabled:
        from . import ai_sdk

        parent.register_blueprint(streams.sse_bp)
        parent.register_blueprint(ai_blocks.sse_bp)
        parent.register_blueprint(ai_sdk.bp)
    if settings.websocket_enabled:
        from . import ws

        parent.register_blueprint(ws.bp)
    return parent
