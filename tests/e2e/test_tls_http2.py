"""HTTPS and HTTP/2, end to end: ``python -m quartapp`` with TLS_CERTFILE and TLS_KEYFILE from a
throwaway CA (trustme) for 127.0.0.1, and httpx2 with ``http2=True`` trusting that CA.

What TLS brings: ALPN picks h2, so the page and every stream share one connection (a browser
over HTTP/1.1 holds six connections per host, and a page of blocks runs out); the session
cookie is ``Secure``; a client without h2 still gets HTTP/1.1. A half or bad pair stops
start-up with one line, on both start paths (``python -m quartapp`` and Hypercorn's command
line with ``quartapp.hypercorn_conf``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trustme

from quartapp.config import ROOT
from tests.conftest import ProcessServer, free_port, spawn_server, subprocess_env
from tests.helpers import Event, assert_contiguous, assert_valid_event, fold_text, sse_envelope, terminal_of

QUESTION = "Why is the sky blue?"
HSTS_MAX_AGE_S = 600
#: Streams at once on one connection: six is HTTP/1.1's per-host connection cap in browsers.
STREAMS = 6


@dataclass(frozen=True)
class Pair:
    ca: trustme.CA
    certfile: Path
    keyfile: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(name="pair", scope="module")
def _pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return Pair(ca, certfile, keyfile)


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of ``python -m quartapp`` as tests/conftest.py's ``spawn_server`` makes it."""
    return subprocess_env(HSTS_MAX_AGE_S=str(HSTS_MAX_AGE_S), **overrides)


def spawn_tls_server(log_dir: Path, pair: Pair, command: list[str] | None = None) -> ProcessServer:
    """Start ``command`` (default ``python -m quartapp``) serving HTTPS; returns once /healthz answers."""
    return spawn_server(
        log_dir,
        command,
        tls=pair.client_context(),
        HSTS_MAX_AGE_S=str(HSTS_MAX_AGE_S),
        TLS_CERTFILE=str(pair.certfile),
        TLS_KEYFILE=str(pair.keyfile),
    )


@pytest.fixture(name="tls_server", scope="module")
def _tls_server(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    server = spawn_tls_server(tmp_path_factory.mktemp("server"), pair)
    try:
        yield server
    finally:
        assert server.terminate() == 0
        assert "Traceback" not in server.log_text()


def h2_client(server: ProcessServer, pair: Pair, **options: Any) -> httpx2.AsyncClient:
    """A client offering h2 and HTTP/1.1 by ALPN, as a browser does."""
    options.setdefault("http2", True)
    return httpx2.AsyncClient(base_url=server.base_url, verify=pair.client_context(), timeout=15, **options)


@dataclass
class Timed:
    """One SSE response read to its end: the events, when the first token and the end came,
    and which client socket (local address) carried it."""

    http_version: str
    client_addr: tuple[str, int]
    events: list[Event] = field(default_factory=list)
    first_token_at: float = 0.0
    ended_at: float = 0.0


async def read_timed(client: httpx2.AsyncClient, url: str, params: dict[str, Any]) -> Timed:
    async with asyncio.timeout(20), client.sse(url, params=params) as source:
        response = source.response
        assert response.status_code == 200, await response.aread()
        stream = response.extensions["network_stream"]
        read = Timed(response.http_version, stream.get_extra_info("client_addr"))
        async for sse in source:
            if sse.data == "" and sse.retry is not None:
                continue  # the leading ``retry:`` frame
            event = assert_valid_event(sse_envelope(sse.event, sse.id, sse.data), "sse")
            if event["type"] == "token" and not read.first_token_at:
                read.first_token_at = time.monotonic()
            read.events.append(event)
        read.ended_at = time.monotonic()
        return read


def assert_complete(events: list[Event]) -> None:
    assert_contiguous(events)
    done = terminal_of(events)
    assert (done["type"], done["data"]["status"]) == ("done", "complete"), done
    assert fold_text(events).strip() == done["data"]["result"]["text"]


def assert_hsts(response: httpx2.Response) -> None:
    """HSTS comes with quartapp/headers.py (issue 18, another part): required once that module
    exists, and checked whenever the header is there."""
    hsts = response.headers.get("strict-transport-security")
    if importlib.util.find_spec("quartapp.headers") is not None:
        assert hsts is not None, response.headers
    if hsts is not None:
        assert f"max-age={HSTS_MAX_AGE_S}" in [part.strip() for part in hsts.split(";")], hsts


async def test_the_page_and_a_stream_come_over_http2(tls_server: ProcessServer, pair: Pair) -> None:
    async with h2_client(tls_server, pair) as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.http_version == "HTTP/2"
        assert "text/html" in page.headers["content-type"]
        assert page.extensions["network_stream"].get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        assert_hsts(page)

        created = await client.post("/api/streams", json={"block_type": "ask_question", "input": QUESTION})
        assert created.status_code == 201 and created.http_version == "HTTP/2", created.text
        cookie = page.headers.get("set-cookie") or created.headers.get("set-cookie")  # the page mints it, or the API
        assert cookie is not None and cookie.startswith("ail_session="), (page.headers, created.headers)
        assert "Secure" in [part.strip() for part in cookie.split(";")], cookie
        assert_hsts(created)

        read = await read_timed(client, created.json()["events_url"], {})
        assert read.http_version == "HTTP/2"
        assert read.events[0]["type"] == "start"
        assert_complete(read.events)
        assert terminal_of(read.events)["data"]["usage"]["output_tokens"] == 48  # MAX_TOKENS of the child


async def test_six_streams_at_once_share_one_connection(tls_server: ProcessServer, pair: Pair) -> None:
    params = {"question": QUESTION, "max_tokens": 40, "interval_ms": 25}  # about a second each
    async with h2_client(tls_server, pair) as client:
        warm = await client.get("/")  # the connection, and the page that would open the streams
        page_addr = warm.extensions["network_stream"].get_extra_info("client_addr")
        reads = await asyncio.gather(
            *(read_timed(client, "/api/stream/ai-block/ask_question", params) for _ in range(STREAMS))
        )
    assert {r.http_version for r in reads} == {"HTTP/2"}
    assert {r.client_addr for r in reads} == {page_addr}, "the streams did not share the page's connection"
    assert max(r.first_token_at for r in reads) < min(r.ended_at for r in reads), "the streams did not overlap"
    for read in reads:
        assert_complete(read.events)
        assert terminal_of(read.events)["data"]["usage"]["output_tokens"] == 40


async def test_a_client_without_h2_gets_http11_over_tls(tls_server: ProcessServer, pair: Pair) -> None:
    async with h2_client(tls_server, pair, http2=False) as client:
        read = await read_timed(client, "/api/stream/ai-block/ask_question", {"question": QUESTION})
    assert read.http_version == "HTTP/1.1"
    assert_complete(read.events)


def test_hypercorns_command_line_serves_http2_with_the_same_settings(pair: Pair, tmp_path: Path) -> None:
    """``hypercorn --config python:quartapp.hypercorn_conf``: the module carries the pair too, and
    the other options (no ``Server`` header)."""
    hypercorn = [sys.executable, "-m", "hypercorn", "--config", "python:quartapp.hypercorn_conf"]
    server = spawn_tls_server(tmp_path, pair, [*hypercorn, "quartapp.app:create_app()"])
    try:
        with httpx2.Client(base_url=server.base_url, verify=pair.client_context(), http2=True) as client:
            response = client.get("/healthz")
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        assert "server" not in response.headers
    finally:
        server.terminate()


# -- a half or bad pair stops start-up with one line -------------------------------------------


def start_up_error(tmp_path: Path, command: list[str], **env: str) -> str:
    """Run a start that must fail; its exit code is 1 and its whole output one line, returned."""
    result = subprocess.run(
        command, cwd=ROOT, env=child_env(PORT=str(free_port()), **env), capture_output=True, text=True, timeout=30
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    return output


@pytest.fixture(name="wrong_key", scope="module")
def _wrong_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("other") / "key.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(path))
    return path


START_PATHS = {
    "python -m quartapp": [sys.executable, "-m", "quartapp"],
    "hypercorn_conf": [sys.executable, "-c", "import quartapp.hypercorn_conf"],
}


@pytest.mark.parametrize("start", sorted(START_PATHS))
@pytest.mark.parametrize("case", ["cert without key", "key without cert", "missing file", "wrong key"])
def test_a_half_or_bad_pair_stops_start_up_with_one_line(
    start: str, case: str, pair: Pair, wrong_key: Path, tmp_path: Path
) -> None:
    cert, key = str(pair.certfile), str(pair.keyfile)
    env, expected = {
        "cert without key": ({"TLS_CERTFILE": cert}, "and TLS_KEYFILE is empty"),
        "key without cert": ({"TLS_KEYFILE": key}, "and TLS_CERTFILE is empty"),
        "missing file": (
            {"TLS_CERTFILE": str(tmp_path / "nope.pem"), "TLS_KEYFILE": key},
            f"TLS_CERTFILE '{tmp_path / 'nope.pem'}' cannot be read: No such file or directory",
        ),
        "wrong key": ({"TLS_CERTFILE": cert, "TLS_KEYFILE": str(wrong_key)}, "(KEY_VALUES_MISMATCH)"),
    }[case]
    line = start_up_error(tmp_path, START_PATHS[start], **env)
    assert line.startswith("cannot start: TLS_"), line
    assert expected in line, line
