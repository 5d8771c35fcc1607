"""A test fails when the server logged an error while it ran (a plugin of tests/e2e and tests/faults).

An unhandled exception in the app is a 5xx or a broken stream even when the client
saw something plausible; Hypercorn and asyncio log what the app cannot see. Tests that
provoke an error on purpose are marked ``server_errors_expected``. A conftest takes this
guard with ``from tests.server_errors import *``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

__all__ = ["_no_server_errors", "pytest_runtest_makereport"]

#: Whether a test's call phase failed (read by fixtures' teardown).
CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


#: Top-level loggers of the server side: the app, Hypercorn, asyncio (a task that died), Quart.
WATCHED = frozenset({"quartapp", "blueprints", "hypercorn", "asyncio", "quart"})


@pytest.fixture(autouse=True)
def _no_server_errors(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING)
    yield
    if request.node.get_closest_marker("server_errors_expected") or request.node.stash.get(CALL_FAILED, False):
        return  # expected, or the test failed already (its report shows the log)
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR and r.name.split(".")[0] in WATCHED]
    if errors:
        lines = "\n".join(
            f"{r.name}: {r.getMessage()}" + (f" [{r.exc_info[1]!r}]" if r.exc_info else "") for r in errors
        )
        pytest.fail(f"the server logged errors during the test:\n{lines}")
