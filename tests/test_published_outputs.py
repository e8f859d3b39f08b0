"""What a run leaves behind and prints: files other users can read, no folder nobody asked for, and
nothing but warnings and the summaries under --quiet."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_DATA, TINY_TRAIN, run_cli

# tqdm's "100%|", "[00:01<00:00" or carriage return; in a log file, "training: 25 % (3 of 12 steps), 00:05 elapsed"
PROGRESS_BAR = re.compile(r"\d%\||\[\d+:\d\d<|\r|\d+ % \([^)]+ of [^)]+\), \d\d:\d\d elapsed")


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory, small_corpus) -> tuple[Path, subprocess.CompletedProcess]:
    """`gpt2zh run` (stages 1-3) under --quiet and umask 022, as on a shared machine."""
    run_dir = tmp_path_factory.mktemp("quiet") / "run"
    previous = os.umask(0o022)
    try:
        result = run_cli("run", "--data-files", str(small_corpus), "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN,
                         "--quiet")
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    return run_dir, result


@pytest.mark.slow
def test_every_file_the_stages_publish_is_readable_by_others_under_umask_022(quiet_run):
    run_dir, _ = quiet_run
    folders = [run_dir / name for name in ("tokenizer", "dataset", "model")]
    folders += sorted((run_dir / "checkpoints").glob("checkpoint-*"))
    assert len(folders) == 5
    modes = {str(path.relative_to(run_dir)): oct(stat.S_IMODE(path.stat().st_mode))
             for folder in folders for path in folder.rglob("*") if path.is_file()}
    assert "model/model.safetensors" in modes
    assert {path: mode for path, mode in modes.items() if mode != "0o644"} == {}


@pytest.mark.slow
def test_a_run_leaves_only_its_own_folders_and_tensorboard_events_in_logs(quiet_run):
    run_dir, _ = quiet_run
    folders = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_dir()}
    assert folders == {"tokenizer", "dataset", "dataset/train", "dataset/validation", "checkpoints",
                       "checkpoints/checkpoint-8", "checkpoints/checkpoint-12", "logs", "logs/tensorboard", "model"}
    assert list((run_dir / "logs" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_quiet_prints_no_progress_bar_only_the_summaries(quiet_run):
    _, result = quiet_run
    assert not PROGRESS_BAR.search(result.stderr), result.stderr
    assert not PROGRESS_BAR.search(result.stdout), result.stdout
    for stage in ("train-tokenizer", "tokenize", "pretrain", "run"):
        assert f"── {stage}: done" in result.stdout, stage


def test_quiet_turns_off_the_progress_bars_of_the_hugging_face_libraries():
    """Downloads, dataset loading and checkpoint shards draw their own bars; --quiet must reach them too."""
    script = ("from gpt2zh.console import setup_logging\nfrom gpt2zh.hf_env import prepare_hf_environment\n"
              "setup_logging(quiet=True)\nprepare_hf_environment()\n"
              "import datasets, huggingface_hub.utils, transformers.utils.logging\n"
              "print(huggingface_hub.utils.are_progress_bars_disabled(), datasets.is_progress_bar_enabled(),\n"
              "      transformers.utils.logging.is_progress_bar_enabled())\n")
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_DISABLE_PROGRESS_BARS")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False"]


def test_tensorboard_events_logged_after_training_ends_stay_in_logs_tensorboard(tmp_path):
    """Stage 3 evaluates once more after train() when the last step had no evaluation; that log must not
    open the Trainer's default <output_dir>/runs/<date>_<host>."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from gpt2zh.training.trainer import tensorboard_callback

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    blocks = [{"input_ids": torch.randint(0, 64, (16,)), "labels": torch.randint(0, 64, (16,))} for _ in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path / "checkpoints"), max_steps=2, per_device_train_batch_size=4,
                             per_device_eval_batch_size=4, logging_steps=1, save_strategy="no", report_to="none",
                             use_cpu=True, disable_tqdm=True)
    logs = tmp_path / "logs" / "tensorboard"
    trainer = Trainer(model=model, args=args, train_dataset=blocks, eval_dataset=blocks,
                      callbacks=[tensorboard_callback(logs)])
    trainer.train()
    trainer.evaluate()
    assert not (tmp_path / "checkpoints" / "runs").exists()
    assert len(list(logs.glob("events.out.tfevents.*"))) == 2  # the training's and the evaluation's


@pytest.mark.parametrize(("final_loss", "verdict"), [
    (5.644, "loss 1.26 nats below the unigram baseline 6.90 (what a model that knows only token frequencies scores): "
            "the model uses context"),
    (7.56, "loss 0.66 nats above the unigram baseline 6.90 (what a model that knows only token frequencies scores): "
           "the model has not yet learned more than those frequencies"),
    (6.85, "loss 0.05 nats below the unigram baseline 6.90 (what a model that knows only token frequencies scores): "
           "the model has not yet learned more than those frequencies"),
])
def test_the_summary_says_in_words_how_the_loss_compares_with_token_frequencies_alone(capsys, final_loss, verdict):
    from gpt2zh.report import StageReport
    from gpt2zh.training.final import report_rows

    summary = {"initial_eval_loss": 8.34, "final_eval_loss": final_loss, "unigram_entropy": 6.9, "steps": 1200,
               "resumed_from_step": 0, "tokens_seen": 2_457_600, "parameters": 4_200_000,
               "train_seconds_this_run": 528.0, "final_perplexity": 282.5, "final_bits_per_char": 6.856,
               "skipped_steps": 0}
    report_rows(StageReport("pretrain"), summary, Path("runs/demo/model"), Path("runs/demo/logs"), ["tensorboard"])
    assert f"\n  context     {verdict}\n" in capsys.readouterr().out
