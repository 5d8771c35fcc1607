"""quart-schema's request validation, with each model's validator built once.

quart-schema 0.25 builds a pydantic ``TypeAdapter`` for every request it validates
(``conversion.model_load``) and reads each query argument three times: about 5% of the
server's work to start a one-shot stream (py-spy, ``bench.start_cost``'s load). These two
decorators keep its contract: the attribute its OpenAPI generation reads, its exception
classes (which ``errors.py`` turns into our 400s) and ``QUART_SCHEMA_CONVERT_CASING``. They
validate with the model's own validator, which pydantic built once, with the model class.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import current_app, request
from quart_schema.casing import camel_to_snake
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
    DataSource,
    QuerystringValidationError,
    RequestSchemaValidationError,
)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[..., Coroutine[Any, Any, Any]]


def load(data: Any, model_class: type[M], error: type[Exception]) -> M:
    """quart-schema's ``model_load`` for a pydantic model: ``data`` as ``model_class``, or ``error``
    holding pydantic's error (the socket routes call it for their query and every client message)."""
    try:
        return model_class.model_validate(data)
    except (ValidationError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise error(exc) from None


def _request_load(data: Any, model_class: type[M], error: type[Exception]) -> M:
    """:func:`load`, with the app's ``QUART_SCHEMA_CONVERT_CASING``, as quart-schema's decorators."""
    if current_app.config["QUART_SCHEMA_CONVERT_CASING"]:
        data = camel_to_snake(data)
    return load(data, model_class, error)


def _async_handler(func: Callable[..., Any]) -> Handler:
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"{func.__qualname__}: these validators wrap async handlers only")
    return func


def validate_querystring(model_class: type[BaseModel]) -> Callable[[Handler], Handler]:
    """As ``quart_schema.validate_querystring``: the handler gets ``query_args`` (a repeated
    argument as a list, ``name[]`` always as one)."""

    def decorator(func: Handler) -> Handler:
        handler = _async_handler(func)
        setattr(handler, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, model_class)

        @wraps(handler)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            data: dict[str, Any] = {}
            for key, values in request.args.lists():
                if key.endswith("[]"):
                    data[key[:-2]] = values
                else:
                    data[key] = values if len(values) > 1 else values[0]
            return await handler(
                *args, query_args=_request_load(data, model_class, QuerystringValidationError), **kwargs
            )

        return wrapper

    return decorator


def validate_request(model_class: type[BaseModel]) -> Callable[[Handler], Handler]:
    """As ``quart_schema.validate_request`` for a JSON body: the handler gets ``data``."""

    def decorator(func: Handler) -> Handler:
        handler = _async_handler(func)
        setattr(handler, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model_class, DataSource.JSON))

        @wraps(handler)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            body = await request.get_json()
            return await handler(*args, data=_request_load(body, model_class, RequestSchemaValidationError), **kwargs)

        return wrapper

    return decorator
