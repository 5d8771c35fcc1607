"""The built learning page (``frontend/dist``), served at ``/`` by the same process.

The page is served with a fresh CSP nonce in place of the mark the build wrote, under the
page's policy (``quartapp/headers.py``), and without validators: a 304 would keep an old
body, whose nonce the new policy no longer names.
"""

from __future__ import annotations

import re
from pathlib import Path

from quart import Blueprint, Response, send_from_directory

from quartapp import headers
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
    headers.install(bp, settings)  # the page brings its own policy; its assets and errors get the API's
    built: dict[int, str] = {}  # index.html by modification time: read once per build

    @bp.get("/")
    async def index() -> Response:
        if not (dist / "index.html").is_file():
            raise APIError(
                404, "frontend_not_built", f"no built page at {dist}; run the README's run command to build it"
            )
        current_identity()  # the page's first response brings the session cookie (its socket sends it back)
        page = dist / "index.html"
        mtime = page.stat().st_mtime_ns
        if mtime not in built:
            built.clear()
            built[mtime] = page.read_text(encoding="utf-8")
        nonce = headers.new_nonce()
        response = Response(built[mtime].replace(headers.BUILD_NONCE_MARK, nonce), mimetype="text/html")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Content-Security-Policy"] = headers.with_frame_ancestors(headers.page_policy(nonce), settings)
        return response

    @bp.get("/assets/<path:name>")
    async def assets(name: str) -> Response:
        if not ASSET_NAME.match(name):
            raise APIError(404, "not_found", "no such asset")
        response = await send_from_directory(dist / "assets", name)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    return bp
