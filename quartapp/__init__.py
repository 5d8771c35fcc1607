"""Live AI interaction layer: a Quart app that streams AI blocks over SSE and WebSocket."""

from .app import create_app as create_app
from .config import Settings as Settings
from .config import load_settings as load_settings

__all__ = ("Settings", "create_app", "load_settings")
