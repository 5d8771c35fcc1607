"""Prometheus metrics, mounted only with ``METRICS_ENABLED``: they tell anyone how busy the
service is and which errors it has had, so they are for a scraper inside the network, not
the public (docs/deploy.md shows a proxy rule allowing the scraper's address only)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response

from quartapp.state import services

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
async def metrics() -> Response:
    """Prometheus text format: active streams, TTFT, inter-token gaps, resumes, errors, log latency."""
    registry = services().streams.metrics.registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
