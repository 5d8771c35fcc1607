"""The distribution: the lock agrees with ``pyproject.toml``, and the wheel works on its own.

The wheel is built from the checkout, installed with the pinned lock into a fresh venv, and
the example host app and the standalone server run from that venv (not from the checkout),
so a module, the built page or the contract missing from the wheel fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from quartapp.config import ROOT
from tests.conftest import TEST_AUTH, ProcessServer, spawn_server

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Which lock file pins each part of the distribution.
LOCKS = {"": "requirements.txt", "redis": "requirements.txt", "openai": "requirements.txt"}
LOCKS |= {"uvloop": "requirements.txt", "dev": "requirements-dev.txt", "local": "requirements-model.txt"}


def _pins(lock: str) -> dict[str, str]:
    """``name -> version`` of a lock file, following its ``-r`` includes."""
    pins: dict[str, str] = {}
    for line in (ROOT / lock).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins |= _pins(line[3:].strip())
        elif line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{lock}: {line!r} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


@pytest.mark.parametrize("extra", sorted(LOCKS))
def test_the_lock_pins_every_declared_dependency_within_its_range(extra: str) -> None:
    project = PYPROJECT["project"]
    declared = project["optional-dependencies"][extra] if extra else project["dependencies"]
    pins = _pins(LOCKS[extra])
    assert declared, extra
    for line in declared:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{line!r} ({extra or 'dependencies'}) is not pinned in {LOCKS[extra]}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{LOCKS[extra]} pins {name}=={pins[name]}, outside pyproject.toml's {line!r}"
        )


@pytest.fixture(name="wheel", scope="module")
def _wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert (ROOT / "frontend/dist/index.html").is_file(), "build the page first (scripts/setup.sh does)"
    source = tmp_path_factory.mktemp("source")  # a copy: the build leaves nothing in the checkout
    for name in ("pyproject.toml", "README.md", "quartapp", "contracts", "frontend/dist"):
        target = source / name
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", out, source],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("quart_ai_blocks-*.whl")
    return wheel


def test_the_wheel_holds_the_package_the_page_and_the_contract_and_nothing_generic(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"quartapp"}, top_level
    for expected in (
        "quartapp/extension.py",
        "quartapp/blueprints/sse.py",
        "quartapp/streams/redis/stream_log.py",  # a subpackage: pyproject lists each one
        "quartapp/blocks/quiz.py",
        "quartapp/contracts/stream-schema.yaml",
        "quartapp/page/index.html",
    ):
        assert expected in names, expected
    assert any(n.startswith("quartapp/page/assets/") and n.endswith(".js") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: quart<0.23,>=0.22" in metadata and 'extra == "redis"' in metadata


@pytest.fixture(name="installed", scope="module")
def _installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and the pinned runtime lock; returns its python."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", ROOT / "requirements.txt", wheel],
        check=True,
        timeout=600,
    )
    return python


def _start(installed: Path, tmp: Path, command: list[str], health: str) -> Iterator[ProcessServer]:
    env = {"PYTHONPATH": "", "PYTHONSAFEPATH": "1"}  # nothing of the checkout on the path
    server = spawn_server(tmp, command=command, cwd=tmp, health_path=health, **env)
    try:
        yield server
    finally:
        server.terminate()


@pytest.fixture(name="host_from_wheel", scope="module")
def _host_from_wheel(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    tmp = tmp_path_factory.mktemp("host")
    shutil.copy2(ROOT / "examples/flashcards_app.py", tmp / "flashcards_app.py")
    yield from _start(installed, tmp, [str(installed), "flashcards_app.py"], "/ai/healthz")


def test_the_installed_package_is_imported_from_the_venv_not_the_checkout(installed: Path) -> None:
    where = subprocess.run(
        [installed, "-P", "-c", "import quartapp, quartapp.blueprints; print(quartapp.__file__)"],
        cwd=installed.parent,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout.strip()
    assert where.startswith(str(installed.parent.parent)) and "site-packages" in where, where
    blueprints = subprocess.run(
        [installed, "-P", "-c", "import blueprints"], cwd=installed.parent, capture_output=True, check=False
    )
    assert blueprints.returncode != 0, "nothing generic lands at the top level of site-packages"


def test_the_example_host_app_runs_from_the_installed_wheel(host_from_wheel: ProcessServer) -> None:
    with httpx2.Client(base_url=host_from_wheel.base_url, headers=TEST_AUTH, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200 and "The host's own page" in page.text
        cards = []
        with client.sse("/ai/api/stream/ai-block/flashcards", params={"input": "Volcanoes"}) as source:
            for sse in source:
                if sse.event == "flashcards.card":
                    cards.append(json.loads(sse.data)["card"]["front"])
                if sse.event == "done":
                    assert json.loads(sse.data)["status"] == "complete"
                    break
        assert cards == [f"Card {i} on Volcanoes" for i in range(1, 5)]
        spec = client.get("/ai/openapi.json").json()
        assert "/ai/api/stream/ai-block/{block_type}" in spec["paths"], sorted(spec["paths"])
        contract = client.get("/ai/asyncapi.json").json()
        assert "event_flashcards_card" in contract["components"]["messages"]


def test_the_installed_standalone_server_serves_the_page_from_the_wheel(
    installed: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("standalone")
    script = installed.parent / "quart-ai-blocks"
    for server in _start(installed, tmp, [str(script)], "/healthz"):
        with httpx2.Client(base_url=server.base_url, timeout=10) as client:
            page = client.get("/")
            assert page.status_code == 200 and '<div id="root">' in page.text, page.text[:300]
            asset = next(part.split('"', 1)[0] for part in page.text.split('src="')[1:])
            assert client.get(asset).status_code == 200, asset
            contract = client.get("/asyncapi.json").json()
            assert set(contract["components"]["messages"]) >= {"event_token", "event_quiz_question"}
