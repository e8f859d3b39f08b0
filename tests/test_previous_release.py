"""Run directories made by the previous release keep working: its manifests and fingerprints read the same,
so nothing it built is built again (issue 25). tests/fixtures/previous_release/README.txt says how the
fixture was made."""

import re
import shutil
from pathlib import Path

from tests.conftest import run_cli

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "previous_release"
# The command that made the fixture (README.txt), less its paths.
SETTINGS = ["--data-validation-fraction", "0.05", "--tokenizer-vocab-size", "2000",
            "--tokenizer-character-coverage", "0.98", "--tokenizer-verify-lines", "100", "--data-block-size", "64",
            "--model-n-positions", "64", "--model-n-layer", "1", "--model-n-head", "2", "--model-n-embd", "8",
            "--training-global-batch-size", "4", "--training-per-device-batch-size", "4",
            "--training-precision", "fp32", "--training-max-steps", "4", "--training-eval-steps", "4",
            "--training-logging-steps", "2", "--checkpoint-save-steps", "4", "--checkpoint-save-total-limit", "1",
            "--training-eval-max-blocks", "4", "--training-sample-max-new-tokens", "4",
            "--optimization-warmup-steps", "1", "--training-dataloader-workers", "0"]
LOCK_FILES = (".gpt2zh.lock", ".gpt2zh.lock.json")  # the command's own, not an output


def files_with_times(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {str(path.relative_to(run_dir)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(run_dir.rglob("*")) if path.is_file() and path.name not in LOCK_FILES}


def test_a_run_directory_from_the_previous_release_is_reused_without_rebuilding(tmp_path):
    folder = tmp_path / "previous_release"
    shutil.copytree(FIXTURE, folder)  # copy2: the times are the fixture's, and must stay
    run_dir = folder / "run"
    before = files_with_times(run_dir)
    assert {"tokenizer/manifest.json", "dataset/manifest.json", "model/manifest.json",
            "model/model.safetensors"} <= set(before)

    # No --config: the base is the old release's settings.yaml, which must read too. Its corpus path is
    # where the fixture was made; the fingerprints hold the file's name and digest, so a copy reads the same.
    result = run_cli("run", "--data-files", "corpus.txt", "--run-dir", "run", *SETTINGS, cwd=folder)
    assert result.returncode == 0, result.stderr
    for stage in ("1 train-tokenizer", "2 tokenize", "3 pretrain"):
        assert re.search(rf"^  {stage} +up to date, reused ", result.stdout, re.MULTILINE), result.stdout
    assert len(re.findall(r"is up to date for this .*; skipped", result.stderr)) == 3, result.stderr
    assert files_with_times(run_dir) == before, "an output or the run's settings were rewritten"
