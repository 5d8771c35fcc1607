"""``LOCAL_MODEL``: a GGUF fetched once from a Hugging Face hub, here a stand-in on loopback.

``huggingface_hub`` reads ``HF_ENDPOINT`` when it is imported, so each fetch runs in a child
process with the stand-in's address, as a user's server does with theirs. The stand-in serves
the bundled model's bytes, so the server really loads and runs what it fetched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from quartapp.config import SettingsError, load_settings
from quartapp.providers.model_file import bundled_model_path
from tests.conftest import ROOT, SUBPROCESS_ENV, spawn_server
from tests.fakes.hf_hub import FakeHub

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
MODEL = bundled_model_path().read_bytes()

_FETCH = """
import sys
from quartapp.providers.base import ProviderError
from quartapp.providers.model_file import fetch_hub_model, parse_hub_model
try:
    print(fetch_hub_model(parse_hub_model(sys.argv[1])))
except ProviderError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.fixture(name="hub", scope="module")
def _hub() -> Iterator[FakeHub]:
    hub = FakeHub(
        repos={
            REPO: {
                "SmolLM2-135M-Instruct.Q4_1.gguf": MODEL,
                "SmolLM2-135M-Instruct.Q8_0.gguf": b"GGUF-not-a-real-model",
                "README.md": b"# a model card",
            }
        }
    )
    server = hub.serve()
    yield hub
    server.shutdown()


def _env(hub: FakeHub, cache: Path) -> dict[str, str]:
    return {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}


def fetch(hub: FakeHub, cache: Path, spec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _FETCH, spec], cwd=ROOT, env=_env(hub, cache), capture_output=True, text=True, timeout=60
    )


def test_a_quantisation_tag_fetches_its_one_file_once_into_the_cache(hub: FakeHub, tmp_path: Path) -> None:
    hub.downloads.clear()
    first = fetch(hub, tmp_path, f"{REPO}:Q4_1")
    assert first.returncode == 0, first.stdout + first.stderr
    path = Path(first.stdout.strip())
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_relative_to(tmp_path)
    assert path.read_bytes() == MODEL
    again = fetch(hub, tmp_path, f"{REPO}:SmolLM2-135M-Instruct.Q4_1.gguf")  # by name: the same cached file
    assert again.returncode == 0 and Path(again.stdout.strip()) == path
    assert hub.downloads == ["SmolLM2-135M-Instruct.Q4_1.gguf"], "the second start downloaded again"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("test-org/no-such-repo:Q4_K_M", "LOCAL_MODEL: no model repo test-org/no-such-repo on http://127.0.0.1:"),
        (f"{REPO}:missing.gguf", f"LOCAL_MODEL: missing.gguf is not a file of {REPO}"),
        (f"{REPO}:Q5_K_M", f"LOCAL_MODEL: {REPO} has 0 GGUF files matching 'Q5_K_M' (none); name the file"),
        (f"{REPO}:Instruct", "has 2 GGUF files matching 'Instruct' (SmolLM2-135M-Instruct.Q4_1.gguf, Smol"),
    ],
)
def test_a_name_the_hub_does_not_have_is_one_clear_line(hub: FakeHub, tmp_path: Path, spec: str, message: str) -> None:
    result = fetch(hub, tmp_path, spec)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.count("\n") == 1 and message in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_download_cut_short_leaves_no_file_that_looks_complete(hub: FakeHub, tmp_path: Path) -> None:
    hub.cut_after = 64 * 1024
    try:
        cut = fetch(hub, tmp_path, f"{REPO}:Q4_1")
    finally:
        hub.cut_after = None
    assert cut.returncode == 3, cut.stdout + cut.stderr
    assert "downloading SmolLM2-135M-Instruct.Q4_1.gguf" in cut.stdout and "start again to retry" in cut.stdout
    ggufs = [p for p in tmp_path.rglob("*.gguf")]
    assert ggufs == [], f"a partial download looks like a model: {ggufs}"
    again = fetch(hub, tmp_path, f"{REPO}:Q4_1")
    assert again.returncode == 0 and Path(again.stdout.strip()).read_bytes() == MODEL


def test_local_model_is_checked_with_the_other_settings() -> None:
    assert f"{REPO}:Q4_1" == load_settings(environ={"LOCAL_MODEL": f"{REPO}:Q4_1"}, env_file=None).LOCAL_MODEL
    with pytest.raises(SettingsError, match=r"^LOCAL_MODEL='qwen' is not allowed: expected owner/repo:FILE\.gguf"):
        load_settings(environ={"LOCAL_MODEL": "qwen"}, env_file=None)


def test_the_server_fetches_the_model_on_first_start_and_streams_from_it(hub: FakeHub, tmp_path: Path) -> None:
    """As a user starts it: ``python -m quartapp`` with ``LOCAL_MODEL``, the real local provider."""
    env = {"AI_PROVIDER": "local", "LOCAL_MODEL": f"{REPO}:Q4_1", "MAX_TOKENS": "24"}
    env |= {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    server = spawn_server(tmp_path, **env)
    try:
        auth = {"Authorization": f"Bearer {SUBPROCESS_ENV['API_KEYS']}"}
        with httpx2.Client(base_url=server.base_url, timeout=60, headers=auth) as client:
            response = client.post("/api/ai-block/ask_question", json={"input": "What is rain?"})
    finally:
        server.terminate()
    assert (tmp_path / "cache").is_dir() and list((tmp_path / "cache").rglob("SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "local" and body["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and not body["scripted"]
    assert body["usage"]["output_tokens"] > 0


def test_a_server_that_cannot_get_its_model_stops_with_one_line(hub: FakeHub, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()} | SUBPROCESS_ENV | {"AI_PROVIDER": "local", "PORT": "0"}
    env |= {"LOCAL_MODEL": "test-org/no-such-repo:Q4_1", "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "quartapp"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("cannot start:")]
    assert errors == [f"cannot start: LOCAL_MODEL: no model repo test-org/no-such-repo on {hub.url} (check the name; "
                      "a gated or private repo needs HF_TOKEN)"], result.stderr  # fmt: skip
