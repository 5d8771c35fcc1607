"""Security tests: as in tests/e2e, a test fails when the server logged an error while it ran."""

from tests.e2e.conftest import _no_server_errors, pytest_runtest_makereport  # noqa: F401
