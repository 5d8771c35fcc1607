"""The standalone app: a bare Quart app with ``AIBlocks`` at the root, the learning page at ``/``.

This is ``python -m quartapp``. It is the app a team starting fresh runs; a team with an app
of its own adds :class:`~quartapp.extension.AIBlocks` to it instead. Being our own app, it
also answers routing errors (an unknown path, a wrong method) with the JSON error shape,
caps every body at ``MAX_BODY_BYTES``, and sets the browser headers of ``quartapp.headers``
on every response. Swagger UI is served at ``/docs`` only with ``DOCS_ENABLED``, from our
own assets (``blueprints/docs.py``); ``/openapi.json`` always.
"""

from __future__ import annotations

from quart import Quart
from quart_schema import QuartSchema

from . import headers
from .blueprints import pages
from .config import Settings, load_settings
from .errors import register_error_handlers
from .extension import BODY_TIMEOUT_S, AIBlocks
from .identity import set_new_session_cookie
from .logging import install_request_logging
from .providers import Provider
from .streams.log import StreamLog


def create_app(
    settings: Settings | None = None,
    provider: Provider | None = None,
    stream_log: StreamLog | None = None,
    ai: AIBlocks | None = None,
) -> Quart:
    """Build the whole product. ``provider`` and ``stream_log`` default to what the settings
    name; tests pass their own to substitute parts without monkeypatching. ``ai`` is the
    extension to add (with blocks of one's own registered); default the built-in four."""
    settings = settings or load_settings()
    app = Quart(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=settings.MAX_BODY_BYTES, BODY_TIMEOUT=BODY_TIMEOUT_S)
    QuartSchema(
        app,
        info={"title": "Live AI interaction layer", "version": "1.0.0"},  # type: ignore[arg-type]
        openapi_path="/openapi.json",
        swagger_ui_path=None,  # quart-schema's loads Swagger UI from a CDN: ours, below, is local
        redoc_ui_path=None,
        scalar_ui_path=None,
        conversion_preference="pydantic",
    )
    (ai or AIBlocks()).init_app(app, settings=settings, provider=provider, stream_log=stream_log)
    install_request_logging(app)  # app-wide: the page and unrouted paths get a request id too
    page = pages.make_blueprint(settings)
    page.after_request(set_new_session_cookie)  # the page's first response brings the session cookie
    app.register_blueprint(page)
    if settings.DOCS_ENABLED:
        from .blueprints import docs

        app.register_blueprint(docs.make_blueprint(settings))
    headers.install(app, settings)  # our own app: /openapi.json and a 404 anywhere get them too
    register_error_handlers(app)  # our own app: a 404 or 405 outside any route is ours too
    return app
