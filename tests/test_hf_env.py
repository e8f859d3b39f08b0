"""PITFALLS.md G13: the Hugging Face cache variables are set before any HF library is imported; CN3: through a
mirror (HF_ENDPOINT) every download comes from the mirror, Xet storage switched off."""

import gzip
import json
import os
import subprocess
import sys

import pytest

from gpt2zh.hf_env import mirror_settings
from tests.conftest import REPO, TINY_TOKENIZER, run_cli
from tests.hub_server import LocalHub

HF_LIBRARIES = ["transformers", "datasets", "huggingface_hub", "tokenizers", "accelerate"]


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_importing_the_cli_and_stage_registry_imports_no_hf_library():
    result = python(
        "import sys, gpt2zh.cli, gpt2zh.stages, gpt2zh.config, gpt2zh.corpus, gpt2zh.tokenizer.stage\n"
        f"print([m for m in {HF_LIBRARIES!r} if m in sys.modules])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_building_the_parser_imports_no_hf_library():
    result = python(
        "import sys\nfrom gpt2zh.cli import build_parser\n"
        "build_parser(['train-tokenizer']).parse_args(['train-tokenizer', '--tokenizer-vocab-size', '9000'])\n"
        f"print([m for m in {HF_LIBRARIES!r} if m in sys.modules])")
    assert result.stdout.strip() == "[]", result.stderr


def test_cache_dir_reaches_every_hf_library_and_modelscope(tmp_path):
    cache = tmp_path / "hf-cache"
    result = python(
        "import json, os\nfrom gpt2zh.hf_env import prepare_hf_environment\n"
        "os.environ['MODELSCOPE_CACHE'] = '/a/shell/export/on/the/small/disk'\n"  # --cache-dir wins over it
        f"prepare_hf_environment({str(cache)!r})\n"
        "import huggingface_hub.constants as hub, datasets.config as ds\n"
        "from gpt2zh.remote import open_hub\n"
        "print(json.dumps([hub.HF_HOME, hub.HF_HUB_CACHE, str(ds.HF_DATASETS_CACHE), "
        "str(open_hub('modelscope')._settings.cache_dir)]))")
    assert result.returncode == 0, result.stderr
    home, hub_cache, datasets_cache, modelscope_cache = json.loads(result.stdout)
    assert home == str(cache) and hub_cache == str(cache / "hub") and datasets_cache == str(cache / "datasets")
    assert modelscope_cache == str(cache / "modelscope")  # the data disk too, not ~/.cache/modelscope


def test_setting_the_cache_after_an_hf_import_is_refused():
    # (G13) The bug: the variable is set, the library already read the old value, the cache stays put.
    result = python("import huggingface_hub\nfrom gpt2zh.hf_env import prepare_hf_environment\n"
                    "prepare_hf_environment('/tmp/too-late')")
    assert result.returncode != 0 and "imported before the cache environment was prepared" in result.stderr


def test_cli_cache_dir_flag_is_what_the_stage_sees(tmp_path):
    cache = tmp_path / "cache"
    nowhere = "http://127.0.0.1:9"  # discard port, refused on loopback: doctor's hub probes never leave the machine
    result = run_cli("doctor", "--json", "--cache-dir", str(cache), "--run-dir", str(tmp_path),
                     env={"HF_ENDPOINT": nowhere, "MODELSCOPE_ENDPOINT": nowhere})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["storage"]["cache_dir"] == str(cache) and report["storage"]["cache_writable"] is True


@pytest.mark.parametrize("environ, wanted", [
    ({}, {}),  # huggingface.co itself: Xet is its fast path, nothing to switch off
    ({"HF_ENDPOINT": "https://huggingface.co/"}, {}),
    ({"HF_ENDPOINT": "https://hf-mirror.com"}, {"HF_HUB_DISABLE_XET": "1"}),
    ({"HF_ENDPOINT": "http://127.0.0.1:8080/"}, {"HF_HUB_DISABLE_XET": "1"}),
    ({"HF_ENDPOINT": "https://hf-mirror.com", "HF_HUB_DISABLE_XET": "0"}, {}),  # the user's choice is kept
    ({"HF_ENDPOINT": "https://hf-mirror.com", "HF_HUB_DISABLE_XET": "1"}, {}),
])
def test_xet_is_switched_off_only_through_a_mirror_and_never_against_the_users_setting(environ, wanted):
    assert mirror_settings(environ) == wanted


def test_the_cli_downloads_a_hub_corpus_through_the_mirror_even_where_the_hub_advertises_xet(tmp_path, demo_documents):
    """(CN3) The local Hub answers like the Hub does for Xet-stored files; the test sets no HF_HUB_DISABLE_XET."""
    text = "".join(json.dumps({"text": doc}, ensure_ascii=False) + "\n" for doc in demo_documents[:1500])
    with LocalHub(tokens={}, xet=True) as mirror:
        commit = mirror.add_dataset("o/news", {"data/part-0.jsonl.gz": gzip.compress(text.encode(), mtime=0)})
        env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE"))}
        env.update(HF_ENDPOINT=mirror.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_ETAG_TIMEOUT="5",
                   HF_HUB_DOWNLOAD_TIMEOUT="10")
        result = run_cli("train-tokenizer", "--run-dir", str(tmp_path / "run"), "--data-files",
                         "hf://datasets/o/news/data/*.jsonl.gz", *TINY_TOKENIZER, env=env, timeout=300)
        requests = list(mirror.state.requests)
    xet = [path for method, path in requests if "xet" in path]
    assert not xet, f"downloads left the mirror for Xet storage: {xet}"
    assert result.returncode == 0, result.stderr
    assert ("GET", f"/datasets/o/news/resolve/{commit}/data/part-0.jsonl.gz") in requests  # the bytes came from it
    assert result.stderr.count(f"Hugging Face downloads go through HF_ENDPOINT={mirror.url}") == 1


@pytest.mark.parametrize("environ", [{}, {"HF_ENDPOINT": "https://huggingface.co"},
                                     {"HF_ENDPOINT": "https://hf-mirror.com", "HF_HUB_DISABLE_XET": "0"}])
def test_huggingface_hub_keeps_xet_on_the_official_endpoint_and_where_the_user_turned_it_on(environ):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE"))}
    code = ("import logging\nlogging.basicConfig()\n"
            "from gpt2zh.hf_env import prepare_hf_environment\nprepare_hf_environment()\n"
            "import huggingface_hub.constants as hub\nprint(hub.HF_HUB_DISABLE_XET)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, **environ}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    # a mirror the user's own setting defeats is said; the official endpoint needs no word
    through_a_mirror = environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/") != "https://huggingface.co"
    assert ("Xet-stored files bypass the mirror" in result.stderr) is through_a_mirror, result.stderr
