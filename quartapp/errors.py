"""One JSON error shape for every 4xx (and the rare 5xx): never HTML, never a traceback.

    {"error": {"code": "input_too_long", "message": "...", "field": "input"}}

``code`` is stable and machine-readable; ``field`` names the offending input
when there is one, else it is null.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict
from quart import Quart, Request, Response, g, has_request_context, has_websocket_context, jsonify, request
from quart.json.provider import DefaultJSONProvider
from quart_rate_limiter import RateLimitExceeded
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from .engine import InputError, RunFailed, StreamingDisabled
from .identity import IdentityError
from .limits import LimitExceeded
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


_DUPLICATE = "duplicate key in a JSON object"
_TOO_DEEP = "JSON nested too deeply"
_STRICT_ERRORS = (_DUPLICATE, _TOO_DEEP)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError(_DUPLICATE)
    return result


def strict_json_loads(text: str | bytes) -> Any:
    """JSON from a client: a duplicate key (which two parsers may read differently) or nesting
    deeper than the interpreter's recursion limit is invalid JSON (``ValueError``), never a 500."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None


class StrictJSONProvider(DefaultJSONProvider):
    """The app's JSON provider (quart-schema's, which serializes pydantic models) for output;
    :func:`strict_json_loads` for input. Install it after ``QuartSchema(app)``."""

    def __init__(self, app: Quart) -> None:
        super().__init__(app)
        self.inner = app.json

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self.inner.dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if kwargs:
            return self.inner.loads(s, **kwargs)
        return strict_json_loads(s)


class JSONErrorRequest(Request):
    """Malformed JSON becomes our ``invalid_json`` error, not Werkzeug's generic 400 page."""

    def on_json_loading_failed(self, error: Exception) -> object:
        detail = str(error) if str(error) in _STRICT_ERRORS else ""
        raise APIError(400, "invalid_json", "the body is not valid JSON" + (f" ({detail})" if detail else ""))


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "field": field}})
    response.status_code = status
    if has_request_context() or has_websocket_context():
        g.error_code = code  # for the request's log line
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

    @app.errorhandler(IdentityError)
    async def _bad_key(exc: IdentityError) -> Response:
        response = error_response(401, "invalid_api_key", "the bearer key is not one this server accepts")
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response

    @app.errorhandler(RateLimitExceeded)
    async def _rate_limited(exc: RateLimitExceeded) -> Response:
        response = error_response(429, "rate_limited", f"too many streams started; try again in {exc.retry_after} s")
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(LimitExceeded)
    async def _over_limit(exc: LimitExceeded) -> Response:
        response = error_response(429, exc.code, exc.message)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

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
