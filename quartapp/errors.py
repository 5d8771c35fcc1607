"""One JSON error shape for every 4xx (and the rare 5xx): never HTML, never a traceback.

    {"error": {"code": "input_too_long", "message": "...", "field": "input"}}

``code`` is stable and machine-readable; ``field`` names the offending input
when there is one, else it is null.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict
from quart import Quart, Request, Response, jsonify, request
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from .engine import InputError, RunFailed, StreamingDisabled
from .streams.log import LogUnavailable
from .streams.manager import StreamNotFound

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """The error shape, published in the OpenAPI document."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class JSONErrorRequest(Request):
    """Malformed JSON becomes our ``invalid_json`` error, not Werkzeug's generic 400 page."""

    def on_json_loading_failed(self, error: Exception) -> object:
        raise APIError(400, "invalid_json", "the body is not valid JSON")


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "field": field}})
    response.status_code = status
    return response


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _validation_field(exc: RequestSchemaValidationError) -> tuple[str, str | None]:
    error = exc.validation_error
    errors = getattr(error, "errors", None)
    if callable(errors):
        details = errors()
        if details:
            first = details[0]
            loc = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__") or None
            return first.get("msg", "invalid value"), loc
    if isinstance(error, TypeError):
        return "the body must be a JSON object", None
    return str(error) or "invalid request", None


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(APIError)
    async def _api_error(exc: APIError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.errorhandler(InputError)
    async def _input_error(exc: InputError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.errorhandler(StreamNotFound)
    async def _not_found(exc: StreamNotFound) -> Response:
        return error_response(404, "stream_not_found", "no such stream", "stream_id")

    @app.errorhandler(UnicodeDecodeError)
    async def _not_utf8(exc: UnicodeDecodeError) -> Response:
        return error_response(400, "invalid_json", "the body is not valid UTF-8 JSON")

    @app.before_request
    async def _json_bodies_only() -> Response | None:
        """A body on our API is JSON or nothing: anything else is 415, before it is read."""
        if request.method in ("POST", "PUT", "PATCH") and (request.content_length or 0) > 0 and not request.is_json:
            return error_response(415, "unsupported_media_type", "send the body as application/json")
        return None

    @app.errorhandler(LogUnavailable)
    async def _log_unavailable(exc: LogUnavailable) -> Response:
        response = error_response(503, "log_unavailable", "the stream log is unreachable; try again shortly")
        response.headers["Retry-After"] = "2"
        return response

    @app.errorhandler(StreamingDisabled)
    async def _streaming_off(exc: StreamingDisabled) -> Response:
        return error_response(
            409,
            "streaming_disabled",
            "streaming is off on this server (AI_STREAMING_ENABLED=false); "
            "POST /api/ai-block/<block_type> returns the whole result as JSON",
        )

    @app.errorhandler(RunFailed)
    async def _run_failed(exc: RunFailed) -> Response:
        status = 504 if exc.code == "provider_timeout" else 503 if exc.code == "provider_unavailable" else 502
        return error_response(status, exc.code, exc.message)

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(exc: RequestSchemaValidationError) -> Response:
        message, field = _validation_field(exc)
        return error_response(422, "validation_error", message, field)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 400 and "json" in (exc.description or "").lower():
            return error_response(400, "invalid_json", "the body is not valid JSON")
        code = _HTTP_CODES.get(status, "http_error")
        return error_response(status, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "the server failed to handle this request")
