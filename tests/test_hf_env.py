"""PITFALLS.md G13: the Hugging Face cache variables are set before any HF library is imported."""

import json
import subprocess
import sys

from tests.conftest import REPO, run_cli

HF_LIBRARIES = ["transformers", "datasets", "huggingface_hub", "tokenizers", "accelerate"]


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_importing_the_cli_and_stage_registry_imports_no_hf_library():
    result = python(
        "import sys, pipeline.cli, pipeline.stages, pipeline.config, pipeline.corpus, tokenizer.stage\n"
        f"print([m for m in {HF_LIBRARIES!r} if m in sys.modules])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_building_the_parser_imports_no_hf_library():
    result = python(
        "import sys\nfrom pipeline.cli import build_parser\n"
        "build_parser(['train-tokenizer']).parse_args(['train-tokenizer', '--tokenizer-vocab-size', '9000'])\n"
        f"print([m for m in {HF_LIBRARIES!r} if m in sys.modules])")
    assert result.stdout.strip() == "[]", result.stderr


def test_cache_dir_reaches_every_hf_library(tmp_path):
    cache = tmp_path / "hf-cache"
    result = python(
        "import json\nfrom pipeline.hf_env import prepare_hf_environment\n"
        f"prepare_hf_environment({str(cache)!r})\n"
        "import huggingface_hub.constants as hub, datasets.config as ds\n"
        "print(json.dumps([hub.HF_HOME, hub.HF_HUB_CACHE, str(ds.HF_DATASETS_CACHE)]))")
    assert result.returncode == 0, result.stderr
    home, hub_cache, datasets_cache = json.loads(result.stdout)
    assert home == str(cache) and hub_cache == str(cache / "hub") and datasets_cache == str(cache / "datasets")


def test_setting_the_cache_after_an_hf_import_is_refused():
    # (G13) The bug: the variable is set, the library already read the old value, the cache stays put.
    result = python("import huggingface_hub\nfrom pipeline.hf_env import prepare_hf_environment\n"
                    "prepare_hf_environment('/tmp/too-late')")
    assert result.returncode != 0 and "imported before the cache environment was prepared" in result.stderr


def test_cli_cache_dir_flag_is_what_the_stage_sees(tmp_path):
    cache = tmp_path / "cache"
    result = run_cli("doctor", "--json", "--cache-dir", str(cache), "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["storage"]["cache_dir"] == str(cache) and report["storage"]["cache_writable"] is True
