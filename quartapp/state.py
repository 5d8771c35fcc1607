"""The extension's state on an app, and ``current_ai``: a leaf module (as quart-schema's
``extension`` lookup is), so the blueprints and the core reach the state of the app that is
handling the request without importing the module that builds it. Also :func:`unproxied`: a
read through one of Quart's context proxies (``request``, ``g``, ``current_app``) costs about
1 us, so a function on every request's path that reads one several times takes the object once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

from quart import Quart, current_app
from werkzeug.local import LocalProxy

if TYPE_CHECKING:
    from .config import Settings
    from .engine import Engine
    from .engine.blocks import BlockRegistry
    from .identity import Identities
    from .limits import Limits
    from .providers import Provider
    from .security import OriginPolicy
    from .streams.manager import StreamManager

T = TypeVar("T")

#: The key of ``app.extensions`` the state is kept under.
EXTENSION_KEY = "ai_blocks"


@dataclass(frozen=True, slots=True)
class Services:
    """The core objects a blueprint may call; one per app the extension was added to."""

    settings: Settings
    provider: Provider
    engine: Engine
    streams: StreamManager
    identities: Identities
    limits: Limits
    origins: OriginPolicy
    blocks: BlockRegistry
    url_prefix: str


def services_of(app: Quart) -> Services:
    """The extension's state on ``app`` (``KeyError`` if ``AIBlocks`` was never added to it)."""
    return cast(Services, app.extensions[EXTENSION_KEY])


def unproxied(proxy: T) -> T:
    """The object behind a context proxy (``request``, ``websocket``, ``g``, ``current_app``)."""
    return cast(T, proxy._get_current_object())  # type: ignore[attr-defined]


def services() -> Services:
    """The current app's services (inside a request or websocket context; a stream's start asks seven times)."""
    return cast(Services, unproxied(current_app).extensions[EXTENSION_KEY])


#: The current app's :class:`Services`, as ``current_app`` is the current app.
current_ai: Services = LocalProxy(services)  # type: ignore[assignment]
