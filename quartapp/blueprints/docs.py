"""Swagger UI at ``/docs`` (``DOCS_ENABLED``; off by default: then ``/docs`` is a 404).

Every byte comes from us: Swagger UI's script and sheet from the pinned ``flask-swagger-ui``
package (its ``dist`` folder only: Swagger UI 5, which renders OpenAPI 3.1; the well-known
``swagger-ui-bundle`` 1.1.0 carries Swagger UI 4.15, which refuses our 3.1 document), the
page and its start-up script from this module (a file, not an inline script),
so the docs run under ``headers.DOCS_POLICY``: ``'self'`` only, no inline script or style,
no ``eval``. Swagger UI's validator badge (which would call validator.swagger.io) is off.
The document it shows is ``/openapi.json``, the published contract, unchanged.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from quart import Blueprint, Response, send_file

from quartapp import headers
from quartapp.config import Settings
from quartapp.errors import APIError

#: The files of the package we serve, and nothing else from it.
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")

PAGE = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Live AI interaction layer: API</title>
    <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
    <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" sizes="32x32">
    <link rel="icon" type="image/png" href="/docs/assets/favicon-16x16.png" sizes="16x16">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/assets/swagger-ui-bundle.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>
"""

INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"""


def make_blueprint(settings: Settings) -> Blueprint:
    """The docs; raises ``ModuleNotFoundError`` naming the package when it is not installed."""
    root = Path(str(importlib.resources.files("flask_swagger_ui") / "dist"))
    bp = Blueprint("docs", __name__)
    headers.install(bp, settings, headers.DOCS_POLICY)

    @bp.get("/docs")
    async def page() -> Response:
        return Response(PAGE, mimetype="text/html", headers={"Cache-Control": "no-cache"})

    @bp.get("/docs/init.js")
    async def init() -> Response:
        return Response(INIT, mimetype="text/javascript", headers={"Cache-Control": "no-cache"})

    @bp.get("/docs/assets/<name>")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise APIError(404, "not_found", "no such asset")
        response = await send_file(root / name)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response

    return bp
