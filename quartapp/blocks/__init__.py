"""The four built-in blocks, each defined in one module with the public :class:`Block` API."""

from __future__ import annotations

from ..engine.blocks import Block, BlockRegistry
from .diagram import DIAGRAM
from .quiz import QUIZ
from .text import ASK_QUESTION, EXPLAIN_ELI10

BUILTIN_BLOCKS: tuple[Block, ...] = (ASK_QUESTION, EXPLAIN_ELI10, QUIZ, DIAGRAM)


def builtin_registry() -> BlockRegistry:
    """A registry with the four built-in blocks, registered as a team registers its own."""
    registry = BlockRegistry()
    for block in BUILTIN_BLOCKS:
        registry.register(block)
    return registry


__all__ = ("ASK_QUESTION", "BUILTIN_BLOCKS", "DIAGRAM", "EXPLAIN_ELI10", "QUIZ", "builtin_registry")
