"""Hugging Face environment variables, set before any HF library is imported (G13).

huggingface_hub, datasets and transformers read HF_HOME and friends once, at import time; setting
them afterwards silently keeps the old cache (G13: a `/root/autodl-tmp/cache` that stayed empty).
This module imports nothing from those libraries so entry points can call it first.
"""

import os
import sys
from pathlib import Path

from pipeline.console import quiet

HF_MODULES = ("transformers", "datasets", "huggingface_hub", "tokenizers", "accelerate")


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
    # The Rust tokenizer's thread pool deadlocks after fork (datasets num_proc, DataLoader workers).
    put("TOKENIZERS_PARALLELISM", "false", override=False)
    put("HF_HUB_DISABLE_TELEMETRY", "1", override=False)
    if quiet():  # --quiet: the libraries' bars too (transformers takes huggingface_hub's setting at import)
        put("HF_HUB_DISABLE_PROGRESS_BARS", "1", override=False)
        put("HF_DATASETS_DISABLE_PROGRESS_BARS", "1", override=False)
    return chosen
