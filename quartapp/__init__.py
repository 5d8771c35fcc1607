"""Live AI blocks for Quart: AI output streamed token by token over SSE and WebSocket.

Add them to an app of your own with :class:`AIBlocks`, or run the standalone app
(:func:`create_app`, ``python -m quartapp``).
"""

from .app import create_app as create_app
from .config import Settings as Settings
from .config import SettingsError as SettingsError
from .config import load_settings as load_settings
from .engine import Block as Block
from .engine import BlockDefinitionError as BlockDefinitionError
from .engine import BlockRequest as BlockRequest
from .engine.shapers import JSONItemsShaper as JSONItemsShaper
from .engine.shapers import TextShaper as TextShaper
from .extension import AIBlocks as AIBlocks
from .serve import hypercorn_config as hypercorn_config
from .state import current_ai as current_ai
from .streams.events import Fold as Fold

__all__ = (
    "AIBlocks",
    "Block",
    "BlockDefinitionError",
    "BlockRequest",
    "Fold",
    "JSONItemsShaper",
    "Settings",
    "SettingsError",
    "TextShaper",
    "create_app",
    "current_ai",
    "hypercorn_config",
    "load_settings",
)
