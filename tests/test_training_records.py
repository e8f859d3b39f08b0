"""What a run records about itself is true: every validation block is evaluated, the learning rate in
the history is the one each step trained at, the logs beside a model are that model's, and the files
that mark checkpoints are never half-written."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from gpt2zh.cli import main
from gpt2zh.training.checkpoints import MARKER, read_marker, repair_compile_prefix
from gpt2zh.training.schedule import Schedule
from tests.conftest import TINY_DATA, TINY_TRAIN, copy_run, one_error_line, pretrain_args, run_cli

PEAK, WARMUP, MIN_RATIO = 1e-3, 2, 0.1  # TINY_TRAIN's warmup; the config's default peak and final ratio


def _history(run_dir: Path) -> dict[int, dict]:
    with open(run_dir / "logs" / "training_history.csv", newline="", encoding="utf-8") as handle:
        return {int(row["step"]): row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def small_validation_run(tmp_path_factory, small_corpus) -> tuple[Path, str]:
    """A corpus whose 0.4 % split holds 4 blocks, 3 of them evaluated: fewer than one eval batch of 4."""
    run_dir = tmp_path_factory.mktemp("small-validation") / "run"
    data = [*TINY_DATA, "--data-validation-fraction", "0.004"]
    for stage in ("train-tokenizer", "tokenize"):
        result = run_cli(stage, "--data-files", str(small_corpus), "--run-dir", str(run_dir), *data)
        assert result.returncode == 0, result.stderr
    stats = json.loads((run_dir / "dataset" / "stats.json").read_text(encoding="utf-8"))
    assert stats["splits"]["validation"]["blocks"] == 4
    result = run_cli("pretrain", "--run-dir", str(run_dir), *data, *TINY_TRAIN, "--training-eval-max-blocks", "3")
    assert result.returncode == 0, result.stderr
    return run_dir, result.stdout + result.stderr


@pytest.mark.slow
def test_a_validation_split_smaller_than_one_batch_is_evaluated_in_full_with_a_warning(small_validation_run):
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM

    run_dir, output = small_validation_run
    history = _history(run_dir)
    assert [step for step, row in history.items() if row["eval_loss"]] == [0, 6, 12]
    summary = json.loads((run_dir / "model" / "training_summary.json").read_text(encoding="utf-8"))
    assert summary["initial_eval_loss"] and summary["final_bits_per_char"]
    assert "validation  loss" in output
    assert "the validation split has only 4 block(s) (256 tokens): every block is evaluated" in output

    # the final loss is the mean over exactly the 3 evaluated blocks, the partial batch included
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model").eval()
    blocks = load_from_disk(str(run_dir / "dataset"))["validation"].select(range(3))
    with torch.no_grad():
        losses = [model(input_ids=ids, labels=ids).loss.item()
                  for ids in (torch.tensor([row["input_ids"]], dtype=torch.int64) for row in blocks)]
    assert summary["final_eval_loss"] == pytest.approx(sum(losses) / 3, abs=1e-4)


def test_warmup_starts_above_zero_peaks_at_its_last_step_and_decays_to_the_minimum():
    factors = [Schedule("cosine", warmup_steps=4, max_steps=12, min_ratio=0.1).factor(step) for step in range(1, 13)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a > b for a, b in zip(factors[3:], factors[4:], strict=False))  # cosine decay, strictly falling
    assert factors[-1] == pytest.approx(0.1)


@pytest.mark.slow
def test_the_history_records_the_learning_rate_each_step_trained_at(trained):
    """The Trainer logs the rate the optimizer just used; step 1 trains at peak / warmup, never at 0."""
    history = _history(trained[0])
    assert float(history[1]["learning_rate"]) == pytest.approx(PEAK / WARMUP)
    for step, row in history.items():
        if row["learning_rate"]:
            expected = PEAK * Schedule("cosine", WARMUP, 12, MIN_RATIO).factor(step)
            assert float(row["learning_rate"]) == pytest.approx(expected), step
    assert float(history[12]["learning_rate"]) == pytest.approx(PEAK * MIN_RATIO)


@pytest.mark.slow
def test_the_model_folder_keeps_its_own_history_after_a_crashed_restart(tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    frozen = {name: (run_dir / "model" / name).read_bytes() for name in ("training_history.csv", "samples.md")}
    assert frozen["training_history.csv"] == (trained[0] / "logs" / "training_history.csv").read_bytes()
    # a restart from scratch that dies (here: refused by a NaN at every step) rewrites logs/ in place
    result = run_cli(*pretrain_args(run_dir, "--resume", "never", "--force", "--training-max-nonfinite-steps", "2"),
                     env={"GPT2ZH_FAULTS": json.dumps({"nan_loss_steps": list(range(1, 13))})})
    assert result.returncode != 0
    assert (run_dir / "logs" / "training_history.csv").read_bytes() != frozen["training_history.csv"]
    for name, content in frozen.items():
        assert (run_dir / "model" / name).read_bytes() == content, name

    from gpt2zh.hub.stage import upload_sources

    sources = upload_sources(run_dir)
    assert sources["training_history.csv"] == run_dir / "model" / "training_history.csv"
    assert sources["loss.png"] == run_dir / "model" / "loss.png"


@pytest.mark.slow
def test_push_refuses_a_model_whose_dataset_was_rebuilt_since(tmp_path, capsys, trained, small_corpus):
    run_dir = copy_run(trained[0], tmp_path)
    result = run_cli("tokenize", "--data-files", str(small_corpus), "--run-dir", str(run_dir), *TINY_DATA,
                     "--data-block-size", "32", "--force")
    assert result.returncode == 0, result.stderr
    code = main(["push", "--run-dir", str(run_dir), "--hub-repo-id", "someone/model", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and one_error_line(err)
    assert "was trained on another dataset than the one now in" in err and "retrain with `gpt2zh pretrain`" in err


def test_rewriting_a_checkpoint_marker_never_leaves_half_of_it(tmp_path, trained, monkeypatch):
    """repair_compile_prefix rewrites the marker after stripping `_orig_mod.`; a crash mid-write must leave
    the previous marker whole (the checkpoint stays resumable), never a torn one."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "checkpoint-12"
    shutil.copytree(trained[0] / "checkpoints" / "checkpoint-12", folder)
    weights = load_file(str(folder / "model.safetensors"))
    save_file({f"_orig_mod.{key}": value for key, value in weights.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    before = read_marker(folder)

    real_write_text = Path.write_text

    def crash_half_way(self, data, *args, **kwargs):
        if self.name.startswith(MARKER):
            real_write_text(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError("killed mid-write")
        return real_write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", crash_half_way)
    with pytest.raises(OSError, match="killed mid-write"):
        repair_compile_prefix(folder)
    assert read_marker(folder) == before


def test_drawing_samples_leaves_the_training_random_state_where_it_was(trained):
    """Samples are drawn at every evaluation; from the training RNG they would change every later dropout mask
    and make a resumed run differ from an uninterrupted one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpt2zh.training.samples import generate_samples

    model = AutoModelForCausalLM.from_pretrained(trained[0] / "model")
    tokenizer = AutoTokenizer.from_pretrained(trained[0] / "model")
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    samples = generate_samples(model, tokenizer, ["今天", "中国"], max_new_tokens=4, seed=7)
    assert len(samples) == 2 and all(isinstance(text, str) for _, text in samples)
    assert torch.equal(torch.get_rng_state(), before)
