"""Model sources behind one interface (see ``base.py``); ``make_provider`` picks one from the settings."""

from __future__ import annotations

from ..config import MILLISECONDS, Settings
from .base import Provider as Provider
from .base import ProviderError as ProviderError


def make_provider(settings: Settings) -> Provider:
    """The provider ``AI_PROVIDER`` names. Heavy imports happen only for the one chosen."""
    if settings.AI_PROVIDER == "scripted":
        from .scripted import ScriptedProvider

        return ScriptedProvider(settings.SCRIPTED_TOKEN_INTERVAL_MS * MILLISECONDS)
    if settings.AI_PROVIDER == "openai":
        from .openai import OpenAIProvider

        return OpenAIProvider(settings)
    from .local import LocalProvider

    return LocalProvider(settings)
