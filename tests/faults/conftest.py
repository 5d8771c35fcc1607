"""The fault battery: each module injects one fault into a real server and states its pass criterion.

Servers are real Hypercorns on loopback (in this session's event loop, or ``python -m
quartapp`` child processes), clients are httpx2 / websockets / raw sockets, and every
event a test receives is validated against the contract (``tests.helpers.assert_valid_event``).

As in ``tests/e2e``, a test fails when the server side logged an error while it ran, unless
it is marked ``server_errors_expected`` (it provokes one on purpose: a provider bug, Redis gone).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

CALL_FAILED = pytest.StashKey[bool]()

#: Top-level loggers of the server side: the app, Hypercorn, asyncio (a task that died), Quart.
WATCHED = frozenset({"quartapp", "blueprints", "hypercorn", "asyncio", "quart"})


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def _no_server_errors(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING)
    yield
    if request.node.get_closest_marker("server_errors_expected") or request.node.stash.get(CALL_FAILED, False):
        return
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR and r.name.split(".")[0] in WATCHED]
    if errors:
        lines = "\n".join(
            f"{r.name}: {r.getMessage()}" + (f" [{r.exc_info[1]!r}]" if r.exc_info else "") for r in errors
        )
        pytest.fail(f"the server logged errors during the test:\n{lines}")


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
