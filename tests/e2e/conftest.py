"""End-to-end tests fail when the server logged an error while they ran (``tests.server_errors``);
``direct_writes`` records what the memory log wrote to readers in the producer's step."""

import asyncio
from collections.abc import Iterator

import pytest

from quartapp.streams.log import MemoryStreamLog
from tests.server_errors import *  # noqa: F403  (the guard: a report hook and an autouse fixture)


@pytest.fixture(name="direct_writes")
def _direct_writes() -> Iterator[list[tuple[str, str, str]]]:
    """``(stream_id, event type, writing task's name)`` of every event the memory log writes to
    parked readers (its direct delivery), while the test runs."""
    written: list[tuple[str, str, str]] = []
    deliver = MemoryStreamLog._deliver

    def spy(stream: object, entry: object) -> None:
        deliver(stream, entry)  # type: ignore[arg-type]
        task = asyncio.current_task()
        written.append((entry.stream_id, entry.type, task.get_name() if task else ""))  # type: ignore[attr-defined]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MemoryStreamLog, "_deliver", staticmethod(spy))
        yield written
