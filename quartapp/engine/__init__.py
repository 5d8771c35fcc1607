"""The runtime engine: block -> prompt -> provider -> shaped events."""

from .blocks import Block as Block
from .blocks import BlockDefinitionError as BlockDefinitionError
from .blocks import BlockRegistry as BlockRegistry
from .blocks import BlockRequest as BlockRequest
from .runner import Completed as Completed
from .runner import Engine as Engine
from .runner import InputError as InputError
from .runner import Run as Run
from .runner import RunFailed as RunFailed
from .runner import StreamingDisabled as StreamingDisabled
