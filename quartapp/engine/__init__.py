"""The runtime engine: block -> prompt -> provider -> shaped events."""

from .blocks import BLOCK_TYPES as BLOCK_TYPES
from .blocks import BlockRequest as BlockRequest
from .blocks import BlockType as BlockType
from .runner import Completed as Completed
from .runner import Engine as Engine
from .runner import InputError as InputError
from .runner import Run as Run
from .runner import RunFailed as RunFailed
from .runner import StreamingDisabled as StreamingDisabled
