"""Hugging Face environment variables, set before any HF library is imported (G13).

huggingface_hub, datasets and transformers read HF_HOME and friends once, at import time; setting
them afterwards silently keeps the old cache (G13: a `/root/autodl-tmp/cache` that stayed empty).
This module imports nothing from those libraries so entry points can call it first.

Through a mirror (HF_ENDPOINT=https://hf-mirror.com) every download must come from the mirror (CN3):
huggingface_hub 2.x fetches a Xet-stored file (any file whose resolve answer carries `X-Xet-Hash`, most LFS
files on the Hub today) from the CAS server that the Hub's token route names (`cas-server.xethub.hf.co`), not
from HF_ENDPOINT, whenever hf_xet is installed (a dependency of huggingface_hub) and HF_HUB_DISABLE_XET is
not set; it reads that variable once, at import. hf_transfer is gone in 2.x (HF_HUB_ENABLE_HF_TRANSFER only
warns), so Xet is the one backend that bypasses the endpoint.
"""

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from gpt2zh.console import quiet

HF_MODULES = ("transformers", "datasets", "huggingface_hub", "tokenizers", "accelerate")
OFFICIAL_ENDPOINT = "https://huggingface.co"  # huggingface_hub's default when HF_ENDPOINT is unset
log = logging.getLogger("gpt2zh")


def hub_endpoint(environ: Mapping[str, str]) -> str:
    """The Hugging Face endpoint huggingface_hub will use (HF_ENDPOINT, else huggingface.co), without a trailing '/'."""
    return (environ.get("HF_ENDPOINT") or OFFICIAL_ENDPOINT).strip().rstrip("/")


def is_mirror(endpoint: str) -> bool:
    return endpoint.lower() != OFFICIAL_ENDPOINT


def mirror_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables a mirror needs that the user did not set: Xet off, so files come from the mirror (CN3).

    The official endpoint gets nothing (Xet is faster there); an explicit HF_HUB_DISABLE_XET, 0 included,
    is the user's choice and is kept.
    """
    if not is_mirror(hub_endpoint(environ)) or "HF_HUB_DISABLE_XET" in environ:
        return {}
    return {"HF_HUB_DISABLE_XET": "1"}


def hf_modules_already_imported() -> list[str]:
    return [name for name in HF_MODULES if name in sys.modules]


def prepare_hf_environment(cache_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Set cache and runtime variables; returns the variables this call set.

    An explicit cache_dir wins over the environment; otherwise existing values are kept.
    Raises RuntimeError if an HF library was imported first, since the setting could not take effect.
    """
    early = hf_modules_already_imported()
    if early and cache_dir is not None:
        raise RuntimeError(f"{', '.join(early)} imported before the cache environment was prepared")
    chosen: dict[str, str] = {}

    def put(name: str, value: str, override: bool) -> None:
        if override or name not in os.environ:
            os.environ[name] = value
            chosen[name] = value

    if cache_dir is not None:
        home = Path(cache_dir).expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        put("HF_HOME", str(home), override=True)
        # Derived caches follow HF_HOME only when unset; pin them so an older shell export
        # cannot split the cache across two disks.
        put("HF_HUB_CACHE", str(home / "hub"), override=True)
        put("HF_DATASETS_CACHE", str(home / "datasets"), override=True)
        # ModelScope's SDK reads its cache folder when a client is made: the same disk, its own folder
        put("MODELSCOPE_CACHE", str(home / "modelscope"), override=True)
    # The Rust tokenizer's thread pool deadlocks after fork (datasets num_proc, DataLoader workers).
    put("TOKENIZERS_PARALLELISM", "false", override=False)
    put("HF_HUB_DISABLE_TELEMETRY", "1", override=False)
    if quiet():  # --quiet: the libraries' bars too (transformers takes huggingface_hub's setting at import)
        put("HF_HUB_DISABLE_PROGRESS_BARS", "1", override=False)
        put("HF_DATASETS_DISABLE_PROGRESS_BARS", "1", override=False)
    switched = mirror_settings(os.environ)
    for name, value in switched.items():  # (CN3) it leaves out what the user set
        put(name, value, override=True)
    endpoint = hub_endpoint(os.environ)
    # said once, where it is our doing or the user's setting defeats the mirror; silent where the user chose it
    if switched:
        log.info(f"Hugging Face downloads go through HF_ENDPOINT={endpoint}; Xet storage off (HF_HUB_DISABLE_XET=1), "
                 "so no file comes from the Hub's own servers (PITFALLS.md CN3)")
    elif is_mirror(endpoint) and os.environ.get("HF_HUB_DISABLE_XET", "").upper() not in ("1", "ON", "YES", "TRUE"):
        log.warning(f"HF_ENDPOINT={endpoint} is a mirror but HF_HUB_DISABLE_XET is not 1: Xet-stored files bypass "
                    "the mirror (PITFALLS.md CN3)")
    return chosen
