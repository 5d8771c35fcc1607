"""The fault battery: each module injects one fault into a real server and states its pass criterion.

Servers are real Hypercorns on loopback (in this session's event loop, or ``python -m
quartapp`` child processes), clients are httpx2 / websockets / raw sockets, and every
event a test receives is validated against the contract (``tests.helpers.assert_valid_event``).

As in ``tests/e2e``, a test fails when the server side logged an error while it ran, unless
it is marked ``server_errors_expected`` (it provokes one on purpose: a provider bug, Redis gone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.server_errors import *  # noqa: F403  (the guard: a report hook and an autouse fixture)

# -- the 65 s stream runs in the background of the whole battery ---------------------------
#
# test_long_stream needs a stream longer than Quart's 60 s response timeout. Waiting 65 s
# in line would be a third of the battery's time budget, so the stream starts with the
# battery's first test (this session fixture, autouse for tests/faults only) and its test
# is moved to the end of the session, where it collects a stream that is (nearly) done.

LONG_STREAM_TEST = "test_long_stream.py::test_a_stream_longer_than_quarts_response_timeout_is_not_cut"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    long = [item for item in items if item.nodeid.endswith(LONG_STREAM_TEST)]
    for item in long:
        items.remove(item)
        items.append(item)


@pytest.fixture(name="long_stream", scope="session")
async def _long_stream() -> AsyncIterator[Any]:
    from tests.faults.test_long_stream import LongStream

    stream = await LongStream.begin()
    yield stream
    await stream.end()


@pytest.fixture(autouse=True)
def _long_stream_in_background(long_stream: Any) -> None:
    """Requested by every fault test so that the long stream starts with the first of them."""
