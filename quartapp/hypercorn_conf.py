"""Hypercorn's command line with the options and fixes long streams need::

    hypercorn --config python:quartapp.hypercorn_conf myapp:app

Hypercorn reads this module's upper-case names as its options (``Config.from_object``);
they are those of :func:`quartapp.serve.hypercorn_config`, from the settings (the
environment and ``.env``: HOST, PORT, BACKLOG, GRACEFUL_TIMEOUT_S, SEND_TIMEOUT_S,
WS_MAX_MESSAGE_BYTES, WS_COMPRESSION, TLS_CERTFILE and TLS_KEYFILE: HTTPS, with HTTP/2 by ALPN). Importing
it also applies :mod:`quartapp.hypercorn_fixes`. A bad setting (a TLS pair that does not load)
exits with the one line ``python -m quartapp`` prints, not Hypercorn's import traceback.
"""

from __future__ import annotations

from .config import SettingsError
from .serve import hypercorn_config

try:
    _config = hypercorn_config()
except SettingsError as exc:
    raise SystemExit(f"cannot start: {exc}") from None

bind = _config.bind
backlog = _config.backlog
graceful_timeout = _config.graceful_timeout
keep_alive_timeout = _config.keep_alive_timeout
websocket_max_message_size = _config.websocket_max_message_size
websocket_ping_interval = _config.websocket_ping_interval
read_timeout = _config.read_timeout
write_timeout = _config.write_timeout  # type: ignore[attr-defined]
websocket_compression = _config.websocket_compression  # type: ignore[attr-defined]
accesslog = _config.accesslog
include_server_header = _config.include_server_header
errorlog = _config.errorlog
certfile = _config.certfile
keyfile = _config.keyfile
