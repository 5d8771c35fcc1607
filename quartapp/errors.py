"""One JSON error shape for every 4xx (and the rare 5xx): never HTML, never a traceback.

    {"error": {"code": "input_too_long", "message": "...", "field": "input"}}

``code`` is stable and machine-readable; ``field`` names the offending input
when there is one, else it is null.

This module is a leaf: it imports nothing of the core. Every refusal of the core
(bad input, an unknown stream, a limit, an unreachable log) is an :class:`APIError`
subclass that carries its own status, code, message and headers, so one HTTP handler
(:func:`register_error_handlers`, on the extension's blueprint only) and one WebSocket
translation (:func:`to_api_error`, for ``rejected`` frames) cover them all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from quart import Blueprint, Quart, Response, g, has_request_context, has_websocket_context, jsonify, request
from quart.json.provider import JSONProvider
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

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
    """A refusal the client is told about: status, stable code, message, offending field, headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers: dict[str, str] = dict(headers or {})


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


class StrictJSON(JSONProvider):
    """The JSON module of a request to our routes (``request.json_module``, set per request):
    the app's own provider for output, :func:`strict_json_loads` for the body, and a body
    that is not JSON is our ``invalid_json`` error. The app's provider is left as it is."""

    def __init__(self, app: Quart, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self._app.json.dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if len(s) > self.max_bytes:  # a body sent without Content-Length (checked earlier when it has one)
            raise APIError(413, "body_too_large", f"the body is larger than {self.max_bytes} bytes")
        try:
            return strict_json_loads(s)
        except ValueError as exc:
            detail = str(exc) if str(exc) in _STRICT_ERRORS else ""
            message = "the body is not valid JSON" + (f" ({detail})" if detail else "")
            raise APIError(400, "invalid_json", message) from None


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


def to_api_error(exc: BaseException) -> APIError:
    """Any exception raised while handling one of our requests or socket messages, as what
    the client is told. What is not a known refusal is a logged 500 ``internal_error``."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, RequestSchemaValidationError):
        message, field = _validation_field(exc)
        return APIError(422, "validation_error", message, field)
    if isinstance(exc, UnicodeDecodeError):
        return APIError(400, "invalid_json", "the body is not valid UTF-8 JSON")
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        if status == 400 and "json" in (exc.description or "").lower():
            return APIError(400, "invalid_json", "the body is not valid JSON")
        return APIError(status, _HTTP_CODES.get(status, "http_error"), exc.description or exc.name)
    log.error("unhandled error", exc_info=exc)
    return APIError(500, "internal_error", "the server failed to handle this request")


def error_response(error: APIError) -> Response:
    response = jsonify({"error": {"code": error.code, "message": error.message, "field": error.field}})
    response.status_code = error.status
    response.headers.update(error.headers)
    if has_request_context() or has_websocket_context():
        g.error_code = error.code  # for the request's log line
    return response


async def _handle(exc: Exception) -> Response:
    return error_response(to_api_error(exc))


def register_error_handlers(target: Quart | Blueprint) -> None:
    """The one handler: on the extension's blueprint (its routes only), or on the standalone
    app (where routing errors such as a 404 or 405 are ours too)."""
    target.register_error_handler(Exception, _handle)


def json_bodies_only(strict: StrictJSON, body_timeout_s: float) -> Callable[[], Awaitable[Response | None]]:
    """A ``before_request`` hook: a body on our API is JSON (parsed strictly) or nothing;
    anything else is 415 before it is read, an announced body over the limit is 413."""
    max_bytes = strict.max_bytes

    async def hook() -> Response | None:
        if request.method not in ("POST", "PUT", "PATCH"):
            return None
        length = request.content_length or 0
        if length > max_bytes:
            return error_response(APIError(413, "body_too_large", f"the body is larger than {max_bytes} bytes"))
        if (length > 0 or "Transfer-Encoding" in request.headers) and not request.is_json:
            return error_response(APIError(415, "unsupported_media_type", "send the body as application/json"))
        request.json_module = strict
        request.body_timeout = body_timeout_s  # type: ignore[assignment]
        return None

    return hook
