"""The built learning page (``frontend/dist``), served at ``/`` by the same process."""

from __future__ import annotations

import re
from pathlib import Path

from quart import Blueprint, Response, send_from_directory

from quartapp.config import ROOT, Settings
from quartapp.errors import APIError
from quartapp.identity import current_identity

#: Vite's asset names (``name-hash.ext``, flat). Anything else is not ours: a 404 before the
#: file system sees it (a 300-character name would be ENAMETOOLONG, a 500).
#: Where the wheel puts the built page (pyproject.toml maps frontend/dist to quartapp.page).
INSTALLED_PAGE = Path(__file__).resolve().parent.parent / "page"

ASSET_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


def make_blueprint(settings: Settings) -> Blueprint:
    dist = Path(settings.FRONTEND_DIST)
    dist = dist if dist.is_absolute() else ROOT / dist
    if not (dist / "index.html").is_file() and (INSTALLED_PAGE / "index.html").is_file():
        dist = INSTALLED_PAGE  # an installed wheel carries the page inside the package
    bp = Blueprint("pages", __name__)

    @bp.get("/")
    async def index() -> Response:
        if not (dist / "index.html").is_file():
            raise APIError(
                404, "frontend_not_built", f"no built page at {dist}; run the README's run command to build it"
            )
        current_identity()  # the page's first response brings the session cookie (its socket sends it back)
        response = await send_from_directory(dist, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @bp.get("/assets/<path:name>")
    async def assets(name: str) -> Response:
        if not ASSET_NAME.match(name):
            raise APIError(404, "not_found", "no such asset")
        response = await send_from_directory(dist / "assets", name)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    return bp
