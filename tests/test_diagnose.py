"""`gpt2zh diagnose` on real runs (a healthy one, one with a learning rate 100x too high, one without a
model yet) and each check on fabricated evidence it must catch."""

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from gpt2zh.cli import main
from gpt2zh.diagnose import data_checks, history_checks
from gpt2zh.diagnose.findings import FAIL, OK, WARN
from gpt2zh.tokenizer.quality import byte_values
from tests.conftest import TINY_DATA, run_cli

# Big enough to learn visibly in 60 steps on CPU (a few seconds), small enough for the suite.
LEARNING = ["--model-n-layer", "2", "--model-n-head", "2", "--model-n-embd", "64",
            "--training-global-batch-size", "8", "--training-per-device-batch-size", "8",
            "--training-max-steps", "60", "--training-eval-steps", "15", "--training-logging-steps", "2",
            "--checkpoint-save-steps", "30", "--training-eval-max-blocks", "16",
            "--training-sample-max-new-tokens", "4",
            "--optimization-warmup-steps", "6", "--training-dataloader-workers", "0"]


def _train(trainable_run: Path, target: Path, learning_rate: str) -> Path:
    shutil.copytree(trainable_run, target)
    result = run_cli("pretrain", "--run-dir", str(target), *TINY_DATA, *LEARNING,
                     "--optimization-learning-rate", learning_rate)
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory, trainable_run) -> Path:
    return _train(trainable_run, tmp_path_factory.mktemp("healthy") / "run", "3e-3")


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory, trainable_run) -> Path:
    return _train(trainable_run, tmp_path_factory.mktemp("broken") / "run", "3e-1")  # 100x too high


def _diagnose(run_dir: Path, *extra: str):
    result = run_cli("diagnose", "--run-dir", str(run_dir), *extra)
    report = (run_dir / "logs" / "diagnosis.md").read_text(encoding="utf-8") if result.returncode in (0, 1) else ""
    return result, report


def test_a_healthy_run_passes_every_check_with_evidence(healthy_run):
    result, report = _diagnose(healthy_run)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 problem(s)" in result.stdout
    for evidence in ("token ids inside the vocabulary", "every block is full", "documents separated by",
                     "byte fallback is rare", "training blocks are distinct", "validation is held out",
                     "labels aligned", "initial loss close to ln(vocab)", "gradient norms healthy",
                     "the model memorises one batch", "training loss decreases"):
        assert evidence in report, evidence
    initial = float(re.search(r"initial loss (\d+\.\d+) vs ln\(vocab\) (\d+\.\d+)", report).group(1))
    assert abs(initial - math.log(4000)) < 0.2
    assert "| block 0 |" in report and "| wte |" in report  # per-layer gradient norms
    assert (healthy_run / "logs" / "diagnosis.png").stat().st_size > 10_000
    assert "report" in result.stdout and "diagnosis.md" in result.stdout


def test_a_learning_rate_100x_too_high_is_named_as_the_cause(broken_run):
    result, report = _diagnose(broken_run)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "learning rate" in result.stdout
    assert "learning rate looks too high" in report or "learning rate too high" in report
    assert "cannot memorise one batch: learning rate too high" in report  # the run's 0.3 fails where 1e-3 works
    assert "PITFALLS.md D8" in report and "--optimization-learning-rate" in report
    assert "FAIL: " in report  # the plot carries the findings too
    assert (broken_run / "logs" / "diagnosis.png").is_file()


def test_a_run_without_a_model_is_diagnosed_from_its_data_and_initial_weights(tmp_path, trainable_run):
    run_dir = tmp_path / "run"
    shutil.copytree(trainable_run, run_dir)
    assert main(["diagnose", "--run-dir", str(run_dir), *TINY_DATA, *LEARNING]) == 0
    report = (run_dir / "logs" / "diagnosis.md").read_text(encoding="utf-8")
    assert "weights at initialisation (no checkpoint yet)" in report
    assert "no training history" in report and "gpt2zh pretrain" in report


def test_an_empty_run_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["diagnose", "--run-dir", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no complete tokenizer in") and "\n" not in err


# -- each check on fabricated evidence ------------------------------------------------------------------------


def _blocks(train: np.ndarray, validation: np.ndarray, block: int = 8) -> data_checks.Blocks:
    return data_checks.Blocks(train, validation, len(train), len(validation), block)


def _random_blocks(count: int, seed: int, vocab: int = 100) -> np.ndarray:
    blocks = np.random.default_rng(seed).integers(3, vocab, size=(count, 8)).astype(np.uint16)
    blocks[:, 3] = 1  # an end-of-text in every block
    return blocks


def test_data_checks_catch_out_of_vocabulary_ids_duplicates_overlap_and_missing_separators():
    train, validation = _random_blocks(200, 0), _random_blocks(20, 1)
    clean = data_checks.data_findings(_blocks(train, validation), 100, {"eos": 1, "unk": 0}, ["x"] * 100)
    assert [f.status for f in clean] == [OK] * 6

    out_of_vocabulary = train.copy()
    out_of_vocabulary[5, 2] = 150
    assert data_checks.check_ids(_blocks(out_of_vocabulary, validation), 100).status == FAIL

    duplicated = np.concatenate([train, train[:20]])
    assert data_checks.check_duplicates(_blocks(duplicated, validation)).status == WARN

    leaked = np.concatenate([validation[:5], _random_blocks(15, 2)])
    finding = data_checks.check_overlap(_blocks(train, np.concatenate([leaked, train[:3]])))
    assert finding.status == WARN and "3 of 23 validation blocks also in training" in finding.evidence

    glued = train.copy()
    glued[glued == 1] = 7
    assert data_checks.check_separators(_blocks(glued, validation), 1).status == FAIL

    pieces = ["x"] * 100
    pieces[3:40] = [f"<0x{i:02X}>" for i in range(37)]  # ids 3-39 are byte pieces: ~40% of the random tokens
    findings = data_checks.data_findings(_blocks(train, validation), 100, {"eos": 1, "unk": 0}, pieces)
    assert any(f.title == "many characters fall back to bytes" and f.status in (WARN, FAIL) for f in findings)


def test_a_vocabulary_without_byte_fallback_is_checked_for_unk_and_its_own_separator_is_named():
    """A UER model's character vocabulary: [SEP] ends documents, unseen characters become [UNK] (BM3)."""
    train, validation = _random_blocks(200, 0), _random_blocks(20, 1)
    train[:, 5] = 0  # one [UNK] in every 8 tokens
    pieces = ["[UNK]", "[SEP]", *["x"] * 98]
    findings = data_checks.data_findings(_blocks(train, validation), 100, {"eos": 1, "unk": 0}, pieces)
    by_title = {f.title: f for f in findings}
    assert "documents separated by [SEP]" in by_title and "[SEP] is 12.50% of tokens" in by_title[
        "documents separated by [SEP]"].evidence
    unknown = by_title["characters the vocabulary lacks are [UNK]"]
    assert unknown.status == WARN and "12.500% of tokens are [UNK]" in unknown.evidence
    assert not any("byte" in f.title for f in findings)

    ragged = np.array([np.arange(8), np.arange(6)], dtype=object)
    assert data_checks.check_lengths(_blocks(ragged, validation)).status == FAIL


def _rows(losses: list[float], evals: dict[int, float] | None = None, grad: float = 0.5) -> list[dict]:
    rows = [{"step": i + 1, "loss": value, "grad_norm": grad, "learning_rate": 1e-3, "unigram_entropy": 6.0,
             "skipped_steps": 0} for i, value in enumerate(losses)]
    for step, value in (evals or {}).items():
        rows[step - 1]["eval_loss"] = value
    return rows


def _titles(rows: list[dict]) -> dict[str, str]:
    findings = history_checks.history_findings(history_checks.load_series(rows), 1.0, 1e-3)
    return {f.title: f.status for f in findings}


def test_history_checks_name_spikes_divergence_overfitting_and_a_flat_loss():
    healthy = [8.0 - 3.0 * (1 - math.exp(-i / 15)) for i in range(60)]
    titles = _titles(_rows(healthy, {20: 5.9, 40: 5.4, 60: 5.3}))
    assert titles["training loss decreases"] == OK and titles["no overfitting"] == OK
    assert not any(status != OK for status in titles.values()), titles

    spiky = list(healthy)
    for step in (20, 35, 50):
        spiky[step] += 2.5
    titles = _titles(_rows(spiky))
    assert titles["loss spikes"] == WARN and titles["learning rate looks too high"] == FAIL

    flat = [8.0 + 0.01 * math.sin(i) for i in range(60)]
    assert _titles(_rows(flat))["training loss is not decreasing"] == FAIL

    nonfinite = list(healthy)
    nonfinite[30] = math.nan
    assert _titles(_rows(nonfinite))["non-finite loss during training"] == FAIL

    overfit = _titles(_rows(healthy, {15: 5.6, 30: 5.5, 45: 5.9, 60: 6.3}))
    assert overfit["overfitting: validation loss rising while training falls"] == WARN

    slow = [8.0 - 0.01 * i for i in range(60)]
    assert _titles(_rows(slow))["learning rate may be too low"] == WARN

    clipped = _titles(_rows(healthy, grad=40.0))
    assert clipped["learning rate looks too high"] == FAIL


def test_a_run_stopped_by_the_nan_guard_is_diagnosed_from_its_last_checkpoint(tmp_path, trainable_run):
    """The NaN checklist (N1) on the run it is about: the stop message points at `gpt2zh diagnose`."""
    import json
    import os
    import subprocess
    import sys

    from gpt2zh import faults
    from tests.conftest import REPO, TINY_TRAIN

    run_dir = tmp_path / "run"
    shutil.copytree(trainable_run, run_dir)
    env = {**os.environ, faults.ENV: json.dumps({"nan_loss_steps": list(range(6, 13))})}
    stopped = subprocess.run([sys.executable, "-m", "gpt2zh", "pretrain", "--run-dir", str(run_dir), *TINY_DATA,
                              *TINY_TRAIN, "--training-max-nonfinite-steps", "3"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 2 and "gpt2zh diagnose" in stopped.stderr
    result, report = _diagnose(run_dir, *TINY_DATA, *TINY_TRAIN, "--training-max-nonfinite-steps", "3")
    assert result.returncode == 1
    assert "weights of checkpoint-8" in report  # no model/: the newest complete checkpoint (saved at the stop)
    assert "weights are finite" in report  # the guard kept every NaN out of the saved weights
    assert "3 step(s) skipped by the NaN guard (in the windows logged at steps 6, 8)" in report
    assert "training was stopped by the guard" in report
    assert "learning rate looks too high" not in report  # the Trainer's stand-in losses are not read as data


def _spelled_in_bytes(per_block: list[str], blocks: int = 1000) -> np.ndarray:
    """Blocks of 64 ordinary pieces (ids 259-399) in which block i spells per_block[i % len] in byte pieces
    (id 3 + byte, as SentencePiece numbers them)."""
    rows = np.random.default_rng(0).integers(259, 400, size=(blocks, 64)).astype(np.uint16)
    for index, row in enumerate(rows):
        position = 1
        for char in per_block[index % len(per_block)]:
            ids = [3 + byte for byte in char.encode("utf-8")]
            row[position: position + len(ids)] = ids
            position += len(ids) + 1
    return rows


def test_byte_fallback_names_its_characters_and_line_breaks_in_bytes_are_a_warning():
    # (NU2) 7.34 % of tokens in bytes, most of them line breaks, was called "rare"
    pieces = ["<unk>", "<|endoftext|>", "<|pad|>", *(f"<0x{byte:02X}>" for byte in range(256)), *["x"] * 141]
    values = byte_values(pieces)

    def check(rows: np.ndarray):
        return data_checks.check_byte_fallback(_blocks(rows, rows[:10], 64), values)

    line_breaks = check(_spelled_in_bytes(["\n\n\n\n\n"]))  # 5 of 64 tokens: 7.8 %
    assert line_breaks.status == WARN and line_breaks.title == "line breaks fall back to bytes"
    assert "7.81% of tokens" in line_breaks.evidence and "most often '\\n' ×5,000" in line_breaks.evidence
    assert "--from-stage train-tokenizer --force" in line_breaks.fix and line_breaks.pitfall == "NU2"

    rare = _spelled_in_bytes(["𠀀犇", "𠀀", "𠀀", "𠀀"])  # 4.75 of 64 tokens: 7.4 %
    rare[5, -3:], rare[6, 0] = [3 + 0xF0, 3 + 0xA0, 3 + 0x80], 3 + 0x80  # 𠀀 cut by blocks' edges is not guessed
    many = check(rare)
    assert many.status == WARN and many.title == "many characters fall back to bytes"
    assert "most often '𠀀' ×1,000, '犇' ×250" in many.evidence and "vocab-size" in many.fix

    few = check(_spelled_in_bytes(["犇", ""]))  # 1.5 of 64 tokens: 2.3 %
    assert few.status == OK and few.title == "byte fallback is rare" and "'犇' ×500" in few.evidence


def test_line_breaks_or_tabs_over_one_percent_of_tokens_in_bytes_ask_for_retraining_alone_or_beside_rare_characters():
    # (NU2) the retraining advice starts at 1 % of tokens, well below the 5 % of characters the vocabulary lacks
    pieces = ["<unk>", "<|endoftext|>", "<|pad|>", *(f"<0x{byte:02X}>" for byte in range(256)), *["x"] * 141]
    values = byte_values(pieces)

    def check(per_block: list[str]):
        rows = _spelled_in_bytes(per_block)
        return data_checks.check_byte_fallback(_blocks(rows, rows[:10], 64), values)

    for spelled in ("\n\n", "\t\t"):  # 2 of 64 tokens: 3.1 %, line breaks or tabs alone
        found = check([spelled])
        assert found.status == WARN and found.title == "line breaks fall back to bytes", spelled
        assert "3.12% of tokens are line breaks or tabs" in found.fix and found.pitfall == "NU2", spelled

    mixed = check(["𠀀犇\n\n"])  # 7 bytes of characters the vocabulary lacks (10.9 %) and 2 line breaks (3.1 %)
    assert mixed.status == WARN and mixed.title == "many characters fall back to bytes" and mixed.pitfall == "D3"
    assert "vocab-size" in mixed.fix and "3.12% of tokens are line breaks or tabs" in mixed.fix
    assert "--from-stage train-tokenizer --force" in mixed.fix
