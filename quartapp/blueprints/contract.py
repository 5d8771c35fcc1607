"""The published stream contract of this app's blocks (AsyncAPI 3.0, as JSON).

``contracts/stream-schema.yaml`` is the document of the four built-in blocks; this route
serves the document of the blocks registered on *this* app (a host's own blocks and their
event payloads included), with the channel addresses under the extension's prefix.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from quartapp.contract import build
from quartapp.state import services

bp = Blueprint("contract", __name__)


@bp.get("/asyncapi.json")
async def asyncapi() -> dict[str, Any]:
    """The AsyncAPI document of the stream events of every registered block."""
    core = services()
    return build(core.blocks, core.url_prefix)
