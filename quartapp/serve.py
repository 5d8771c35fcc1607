"""Serve an app with Hypercorn, configured for long streams: ``hypercorn_config`` (public: a
host app's own start uses it too), garbage-collector tuning, and the signal handling that
tells every stream before Hypercorn closes connections. ``python -m quartapp`` runs :func:`main`."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from . import hypercorn_fixes
from .config import Settings, SettingsError, load_settings
from .logging import configure_logging
from .providers.base import ProviderError
from .state import services_of


def hypercorn_config(settings: Settings | None = None, config: Config | None = None) -> Config:
    """Hypercorn's options for long streams, set on ``config`` (default a new one) from the
    settings (default the environment and ``.env``); its defaults break long streams. With
    TLS_CERTFILE and TLS_KEYFILE it serves HTTPS, where browsers get HTTP/2: many streams share
    one connection instead of six connections per host (:func:`tls_files` raises
    :class:`SettingsError` for a pair that does not load).

    The equivalent on Hypercorn's command line is ``hypercorn --config
    python:quartapp.hypercorn_conf app:app`` (see that module), which also applies the fixes."""
    settings = settings or load_settings()
    config = config or Config()
    host = f"[{settings.HOST}]" if ":" in settings.HOST else settings.HOST
    config.bind = [f"{host}:{settings.PORT}"]
    config.backlog = settings.BACKLOG  # default 100 overflows on connection bursts
    config.graceful_timeout = settings.GRACEFUL_TIMEOUT_S
    config.keep_alive_timeout = 75  # above common load balancer idle timeouts (60 s)
    config.websocket_max_message_size = settings.WS_MAX_MESSAGE_BYTES
    # No Hypercorn pings: its ping task sleeps 20 s before it sees a closed socket, which holds
    # every shutdown for the whole graceful timeout. Vanished readers are found by the send
    # timeout (quartapp/asgi.py, blueprints/ws.py) instead.
    config.websocket_ping_interval = None
    config.read_timeout = None  # an SSE client sends nothing after its request: never time reads
    # Hypercorn's access log is off: its lines carry query strings (the one-shot route's question);
    # the app logs each request itself (quartapp/logging.py). Its error log goes through structlog.
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # No ``server: hypercorn-h11`` on every response: it names the server software to anyone
    # (OWASP's secure headers project removes it), and each header costs a response head about
    # 40,000 instructions on its way through Werkzeug, Quart, Hypercorn and h11.
    config.include_server_header = False
    if tls := tls_files(settings):  # Hypercorn then offers h2 by ALPN, HTTP/1.1 to the rest
        config.certfile, config.keyfile = tls
    # frozen readers, idle EOF, lost WS disconnect, no permessage-deflate unless WS_COMPRESSION
    hypercorn_fixes.install(config, settings.SEND_TIMEOUT_S, settings.WS_COMPRESSION)
    return config


def tls_files(settings: Settings) -> tuple[str, str] | None:
    """``(TLS_CERTFILE, TLS_KEYFILE)``, loaded once here to prove they are a readable certificate
    and its key; None for plain HTTP. Hypercorn loads them only when it binds, after the model,
    and a bad pair is then a traceback; here it is one :class:`SettingsError` line naming the
    setting. A key with a passphrase is refused rather than prompted for on the terminal."""
    cert, key = settings.TLS_CERTFILE, settings.TLS_KEYFILE
    if not cert and not key:
        return None
    if not cert or not key:
        empty = "TLS_KEYFILE" if cert else "TLS_CERTFILE"
        raise SettingsError(f"TLS_CERTFILE and TLS_KEYFILE go together, and {empty} is empty: set both, or neither")
    for name, path in (("TLS_CERTFILE", cert), ("TLS_KEYFILE", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise SettingsError(f"{name} {path!r} cannot be read: {exc.strerror or exc}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=lambda: b"")
    except (ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or "no PEM block, or an encrypted one"
        raise SettingsError(
            f"TLS_CERTFILE {cert!r} and TLS_KEYFILE {key!r} are not a PEM certificate and its unencrypted key "
            f"({reason})"
        ) from None
    return cert, key


def tune_gc(settings: Settings) -> None:
    """Collect garbage less often, and never rescan what the app built at startup.

    Every open stream keeps a few hundred objects alive. With Python's defaults a server
    holding thousands of streams runs a young collection every 700 allocations and a full
    one each time the heap grows by a quarter, each walking every live object: under a
    burst of new streams that was a fifth of the CPU and seconds of first-event delay
    (bench/run.sh, S3). ``gc.freeze()`` moves the modules and the app out of the
    collector's sight; a higher young threshold makes collections rarer (cycles live a
    little longer). Reference counting frees everything else at once, as before.
    """
    if settings.GC_GEN0_THRESHOLD == 0:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.GC_GEN0_THRESHOLD, older, oldest)


async def serve_until_signal(app: Quart, config: Config) -> None:
    """Serve until SIGTERM or SIGINT; then tell every stream first, then stop the server.

    Hypercorn's own signal handling closes the listeners, waits up to the
    graceful timeout for connections (open streams never finish by themselves),
    cancels them, and only then runs the app's shutdown: readers would be cut
    with no notice. Here readers get a ``shutdown`` event and the stream's end
    before Hypercorn starts closing, so their responses finish cleanly.
    """
    # The provider first (the model loaded, or fetched from the hub): a start-up failure is then
    # one ProviderError for main() to print, not a lifespan traceback. Its start is idempotent.
    start = getattr(services_of(app).provider, "start", None)
    if start is not None:
        await start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    streams = services_of(app).streams
    for name in ("SIGINT", "SIGTERM"):
        loop.add_signal_handler(getattr(signal, name), stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        await streams.shutdown()

    await serve(app, config, shutdown_trigger=shutdown_trigger)  # type: ignore[arg-type]


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings=settings)
    try:
        config = hypercorn_config(settings)  # first: a bad TLS pair stops start-up before any work
    except SettingsError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if not settings.SECRET_KEY:
        logging.getLogger("quartapp").warning(
            "SECRET_KEY is not set: sessions are signed with a random key, valid for this process only; "
            "several instances must share one SECRET_KEY"
        )
    from .app import create_app

    app = create_app(settings)
    tune_gc(settings)
    scheme = "https" if config.ssl_enabled else "http"
    print(f"Serving on {scheme}://{settings.HOST}:{settings.PORT}/ (provider: {settings.AI_PROVIDER})", flush=True)
    try:
        if settings.WORKER_CLASS == "uvloop":
            import uvloop

            uvloop.run(serve_until_signal(app, config))
        else:
            asyncio.run(serve_until_signal(app, config))
    except ProviderError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
