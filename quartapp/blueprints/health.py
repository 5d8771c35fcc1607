"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_response

from quartapp.schemas import Health
from quartapp.state import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@validate_response(Health, 200)
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@bp.get("/readyz")
@validate_response(Health, 200)
@validate_response(Health, 503)
async def readyz() -> tuple[Health, int]:
    """Ready to take streams: the provider can serve and the stream log answers."""
    core = services()
    checks = {"provider": await core.provider.ready(), "stream_log": await core.streams.log.healthy()}
    ok = all(checks.values())
    return Health(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503
