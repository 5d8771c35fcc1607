"""End-to-end tests fail when the server logged an error while they ran (``tests.server_errors``)."""

from tests.server_errors import *  # noqa: F403  (the guard: a report hook and an autouse fixture)
