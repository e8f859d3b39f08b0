"""Stage 3 for real on CPU: a tiny GPT-2 trained by the Trainer, then loaded with plain transformers."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gpt2zh.cli import main
from gpt2zh.config import load_config
from gpt2zh.training.checkpoints import MARKER, problem_with, read_marker
from gpt2zh.training.history import read_history
from tests.conftest import (
    TINY_DATA,
    TINY_TRAIN,
    assert_same_weights,
    copy_run,
    one_error_line,
    pretrain_args,
    run_cli,
    run_two_processes,
    tree_checksums,
    weights,
)

STEPS = 12  # TINY_TRAIN: 12 steps, evaluation every 6, checkpoints every 4 (2 kept)


def test_final_model_loads_with_plain_transformers_and_generates(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    run_dir, _ = trained
    model_dir = run_dir / "model"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    sizes = (model.config.vocab_size, model.config.n_positions)
    assert sizes == (4000, 64) == (len(tokenizer), tokenizer.model_max_length)
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (1, 1, 2)
    assert "50256" not in (model_dir / "config.json").read_text()
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert (generation["do_sample"], generation["temperature"], generation["top_k"]) == (True, 0.8, 50)
    assert not any(key.startswith("_orig_mod.") for key in weights(model_dir))
    generator = pipeline("text-generation", model=str(model_dir))
    text = generator("今天", max_new_tokens=8)[0]["generated_text"]
    assert isinstance(text, str) and text.startswith("今天")


def test_the_run_explains_its_decisions_and_ends_with_a_summary(trained):
    _, result = trained
    assert "preset cpu (auto: this machine has no CUDA GPU)" in result.stdout  # the plan, on stdout (NU13)
    assert "batch 4 x 1 accumulation x 1 = 4; fp32, sdpa, adamw_torch_fused" in result.stdout
    assert "no checkpoint to resume from" in result.stderr  # a first run starts fresh, no ValueError
    for label in ("trained", "validation", "logs", "wrote", "load it"):
        assert f"\n  {label}" in result.stdout, label


def test_logs_hold_history_plot_samples_and_tensorboard(trained):
    run_dir, _ = trained
    with open(run_dir / "logs" / "training_history.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second", "mfu",
                             "eval_loss", "perplexity", "bits_per_char", "unigram_entropy", "skipped_steps",
                             "gpu_peak_gib", "memory_estimate_gib"]
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS
    evals = [r for r in rows if r["eval_loss"]]
    assert [int(r["step"]) for r in evals] == [0, 6, 12]
    for row in evals:
        assert float(row["perplexity"]) == pytest.approx(math.exp(float(row["eval_loss"])), rel=1e-3)
        assert float(row["bits_per_char"]) > 0 and float(row["unigram_entropy"]) > 0
    assert any(r["tokens_per_second"] for r in rows) and all(r["mfu"] == "" for r in rows)  # no MFU on CPU
    assert (run_dir / "logs" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = (run_dir / "logs" / "samples.md").read_text(encoding="utf-8")
    assert "## step 0" in samples and "## step 12" in samples and samples.count("\n- **") == 3 * 4  # 4 prompts
    assert "## final" not in samples  # step 12 was just evaluated and sampled; the same weights are not resampled
    assert list((run_dir / "logs" / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoints_are_marked_complete_and_limited(trained):
    run_dir, _ = trained
    folders = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert folders == ["checkpoint-12", "checkpoint-8"]  # save_total_limit 2
    for name in folders:
        marker = read_marker(run_dir / "checkpoints" / name)
        assert marker is not None and "model.safetensors" in marker["files"] and "optimizer.pt" in marker["files"]


def test_a_finished_run_is_up_to_date(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    assert main(pretrain_args(run_dir)) == 0
    assert "model is up to date" in capsys.readouterr().err


def test_force_on_a_finished_run_takes_no_step_past_max_steps(tmp_path, trained):
    """The Trainer checks max_steps only after a step; resumed at the final checkpoint it used to take one more."""
    run_dir = copy_run(trained[0], tmp_path)
    result = run_cli(*pretrain_args(run_dir, "--force"))  # a subprocess: transformers' own warnings reach stderr
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "resuming from" in err and "(step 12)" in err
    assert "starting over" not in err and not list(run_dir.glob("*.previous-*"))  # this run's: nothing set aside (NU3)
    assert "There seems not to be a single sample" not in err and "missing keys" not in err
    assert_same_weights(run_dir / "model", trained[0] / "model")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-12", "checkpoint-8"]
    assert json.loads((run_dir / "model" / "training_summary.json").read_text())["steps"] == STEPS


def test_weights_saved_with_the_compile_prefix_still_resume(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-12")
    folder = run_dir / "checkpoints" / "checkpoint-8"
    prefixed = {f"_orig_mod.{key}": value for key, value in weights(folder).items()}
    save_file(prefixed, str(folder / "model.safetensors"), metadata={"format": "pt"})
    marker = read_marker(folder)
    marker["files"]["model.safetensors"] = (folder / "model.safetensors").stat().st_size
    (folder / MARKER).write_text(json.dumps(marker))
    assert main(pretrain_args(run_dir, "--force")) == 0
    assert "`_orig_mod.` prefix in its weights; stripped" in capsys.readouterr().err
    assert_same_weights(run_dir / "model", trained[0] / "model")


def _corrupt_weights_header(folder) -> None:
    """Same size, unreadable: the JSON header after safetensors' 8-byte length starts with '{', no longer."""
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    assert data[8:9] == b"{"
    data[8:9] = b"!"
    path.write_bytes(bytes(data))


def test_a_marked_checkpoint_with_a_truncated_file_is_not_resumable(tmp_path, trained):
    folder = shutil.copytree(trained[0] / "checkpoints" / "checkpoint-12", tmp_path / "checkpoint-12")
    assert problem_with(folder) is None
    optimizer = folder / "optimizer.pt"
    size = optimizer.stat().st_size
    with open(optimizer, "r+b") as handle:
        handle.truncate(size // 2)  # the marker is there and lists the full size
    assert problem_with(folder) == f"optimizer.pt has {size // 2} bytes, {size} were written"


def test_a_marked_checkpoint_of_the_right_sizes_whose_weights_do_not_load_is_not_resumable(tmp_path, trained):
    folder = shutil.copytree(trained[0] / "checkpoints" / "checkpoint-12", tmp_path / "checkpoint-12")
    _corrupt_weights_header(folder)
    assert read_marker(folder)["files"]["model.safetensors"] == (folder / "model.safetensors").stat().st_size
    assert problem_with(folder).startswith("cannot be loaded (SafetensorError: ")


def test_resume_from_a_named_checkpoint_that_does_not_load_is_a_one_line_error(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    folder = run_dir / "checkpoints" / "checkpoint-8"
    _corrupt_weights_header(folder)
    assert main(pretrain_args(run_dir, "--force", "--resume", str(folder))) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(
        f"error: --resume {folder}: cannot resume from it: cannot be loaded (SafetensorError: ")
    assert "Traceback" not in err and "pass a complete checkpoint-N folder, or --resume auto" in err


def test_resuming_with_a_changed_config_is_refused_with_the_changes(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    shutil.rmtree(run_dir / "model")  # stopped before its model: the checkpoints are all the run has
    before = tree_checksums(run_dir / "checkpoints")
    assert main(pretrain_args(run_dir, "--optimization-learning-rate", "0.01")) == 2
    err = capsys.readouterr().err
    assert "was made by a different run; changed: optimization.learning_rate (0.001 -> 0.01)" in err
    assert "--resume never" in err
    assert tree_checksums(run_dir / "checkpoints") == before


def test_a_dataset_made_with_another_tokenizer_file_is_refused_by_stage_3(tmp_path, capsys, trainable_run):
    """(NU17) Same tokenizer inputs, another file (retrained with --force, stage 2 not rerun): other ids."""
    run_dir = copy_run(trainable_run, tmp_path)
    manifest_path = run_dir / "tokenizer" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest_path.write_text(json.dumps({**manifest, "tokenizer_sha256": "0" * 64}), encoding="utf-8")
    assert main(pretrain_args(run_dir)) == 2
    err = capsys.readouterr().err
    assert one_error_line(err) and "was built with another tokenizer than" in err and "gpt2zh tokenize" in err
    assert not (run_dir / "model").exists()


def test_a_run_shorter_than_the_configs_warmup_trains_with_the_warmup_scaled_to_a_tenth(tmp_path, capsys,
                                                                                       trainable_run):
    """(NU5) The demo config's 30 warmup steps on a 3-step run: trained, not refused, and said."""
    run_dir = copy_run(trainable_run, tmp_path)
    at = TINY_TRAIN.index("--optimization-warmup-steps")
    args = [*TINY_TRAIN[:at], *TINY_TRAIN[at + 2:], "--training-max-steps", "3"]
    assert main(["pretrain", "--run-dir", str(run_dir), *TINY_DATA, *args]) == 0
    assert "optimization.warmup_steps 30 is not below training.max_steps 3: warmup scaled to 0 step(s)" in \
        capsys.readouterr().err
    summary = json.loads((run_dir / "model" / "training_summary.json").read_text())
    assert summary["steps"] == 3 and summary["schedule"]["warmup_steps"] == 0


def test_force_with_another_vocabulary_on_a_finished_run_retrains_in_one_command_keeping_the_old_model_aside(
        tmp_path, capsys, trained):
    """(NU3) --force replaces a stage and everything built from it: no second refusal, nothing deleted."""
    run_dir = copy_run(trained[0], tmp_path)
    assert main(["run", "--run-dir", str(run_dir), "--tokenizer-vocab-size", "3000", "--force"]) == 0
    err = capsys.readouterr().err
    assert "starting over, as with --resume never" in err and "the model of the replaced run is kept as" in err
    assert json.loads((run_dir / "model" / "config.json").read_text())["vocab_size"] == 3000
    assert json.loads((run_dir / "model" / "training_summary.json").read_text())["steps"] == 12
    kept = list(run_dir.glob("model.previous-*"))
    assert len(kept) == 1 and json.loads((kept[0] / "config.json").read_text())["vocab_size"] == 4000
    assert_same_weights(kept[0], trained[0] / "model")
    assert len(list(run_dir.glob("checkpoints.previous-*/checkpoint-*"))) == 2


def test_resume_never_keeps_old_checkpoints_aside_and_starts_over(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    assert main(pretrain_args(run_dir, "--force", "--resume", "never")) == 0
    assert "previous checkpoints moved to" in capsys.readouterr().err
    assert len(list(run_dir.glob("checkpoints.previous-*/checkpoint-*"))) == 2
    assert list(run_dir.glob("logs/training_history.previous-*.csv"))
    assert_same_weights(run_dir / "model", trained[0] / "model")  # same seed, same data order, same result


@pytest.mark.slow
def test_a_compiled_run_checkpoints_resumes_and_saves_a_model_without_the_compile_prefix(tmp_path, trainable_run):
    """(G3) For real: torch.compile on CPU (inductor, C++), 4 steps, stopped after step 2 and resumed."""
    from transformers import AutoModelForCausalLM

    run_dir, inductor = copy_run(trainable_run, tmp_path), tmp_path / "inductor"
    args = pretrain_args(run_dir, "--training-torch-compile", "--training-max-steps", "4",
                         "--checkpoint-save-steps", "2")
    env = {"TORCHINDUCTOR_CACHE_DIR": str(inductor)}  # its own cache: kernels there prove the model was compiled
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "compile default" in first.stdout and any(inductor.rglob("*.py"))
    uninterrupted = weights(run_dir / "model")
    shutil.rmtree(run_dir / "model")
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-4")
    resumed = run_cli(*args, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "(step 2)" in resumed.stderr
    for folder in (*sorted((run_dir / "checkpoints").glob("checkpoint-*")), run_dir / "model"):
        assert not any(key.startswith("_orig_mod.") for key in weights(folder)), folder
    final = weights(run_dir / "model")
    assert final.keys() == uninterrupted.keys()
    for key in final:  # the same run, to float noise (~1e-8 measured: compiled CPU kernels are not bit-exact)
        torch.testing.assert_close(final[key], uninterrupted[key], rtol=1e-5, atol=1e-6)
    model = AutoModelForCausalLM.from_pretrained(str(run_dir / "model"))  # plain transformers, no missing keys
    assert model.config.n_layer == 2
    generation = json.loads((run_dir / "model" / "generation_config.json").read_text())
    assert (generation["do_sample"], generation["temperature"], generation["top_k"]) == (True, 0.8, 50)


@pytest.mark.slow
def test_two_process_ddp_on_cpu_trains_writes_once_and_does_not_hang(tmp_path, trainable_run):
    run_dir = copy_run(trainable_run, tmp_path)
    result = run_two_processes(*pretrain_args(run_dir, "--training-max-steps", "5", "--checkpoint-save-steps", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 2 x 1 accumulation x 2 = 4" in result.stdout
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-4", "checkpoint-5"]
    for step in (4, 5):  # training ends at 5, between evaluations: every rank joins the final evaluation
        folder = run_dir / "checkpoints" / f"checkpoint-{step}"
        assert read_marker(folder) is not None
        assert (folder / "rng_state_0.pth").exists() and (folder / "rng_state_1.pth").exists()
    with open(run_dir / "logs" / "training_history.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps))  # one writer, no duplicated rows
    assert all(math.isfinite(float(r["loss"])) for r in rows if r["loss"])
    assert result.stdout.count("── pretrain: done") == 1 and (run_dir / "model" / "model.safetensors").exists()
    assert any(r["eval_loss"] for r in rows if r["step"] == "5")


def test_stages_1_and_2_refuse_to_run_under_a_launcher(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["run", "--run-dir", str(tmp_path)]) == 2
    assert "started by a launcher with 2 processes" in capsys.readouterr().err


def test_dataset_blocks_longer_than_n_positions_are_refused(tmp_path, capsys, trainable_run):
    """Settings edited by hand to 32-token blocks (given to `pretrain`, the block size would be refused as stage
    2's setting, PITFALLS.md NU4): the dataset on disk still has 64."""
    import yaml

    run_dir = copy_run(trainable_run, tmp_path)
    settings = yaml.safe_load((run_dir / "settings.yaml").read_text(encoding="utf-8"))
    settings["command_line"].update({"data.block_size": 32, "model.n_positions": 32})
    (run_dir / "settings.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    assert main(["pretrain", "--run-dir", str(run_dir)]) == 2
    assert "the dataset's blocks have 64 tokens but model.n_positions is 32" in capsys.readouterr().err


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys, trainable_run):
    run_dir = copy_run(trainable_run, tmp_path)
    shutil.rmtree(run_dir / "dataset")
    assert main(pretrain_args(run_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert one_error_line(err) and err.splitlines()[-1].startswith("error: no complete dataset in")


def test_history_keeps_rows_up_to_the_resumed_step(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    history = run_dir / "logs" / "training_history.csv"
    before = read_history(history)
    shutil.rmtree(run_dir / "model")
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-12")  # as if stopped after the save at step 8
    assert main(pretrain_args(run_dir)) == 0
    assert "resuming from" in capsys.readouterr().err
    after = read_history(history)
    assert [row["step"] for row in after] == [0, 1, 2, 4, 6, 8, 10, 12]  # one run: no step twice, none missing
    assert [row for row in after if row["step"] <= 8] == [row for row in before if row["step"] <= 8]
    assert np.isfinite(after[0]["eval_loss"]) and np.isfinite(after[-1]["eval_loss"])  # initial and final
    assert all(np.isfinite(row["loss"]) for row in after[-2:])  # written by the resumed run


def _cosine_schedule(step: int, peak: float, floor: float, warmup: int, total: int) -> float:
    """The documented schedule (optimization group): linear warmup to the peak, cosine decay to the floor."""
    if step <= warmup:
        return peak * step / warmup
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def test_learning_rate_warms_up_then_decays_by_cosine_to_min_lr(trained):
    run_dir, _ = trained
    optimization = load_config(run_dir / "model" / "run_config.yaml").optimization
    peak, floor = optimization.learning_rate, optimization.learning_rate * optimization.min_lr_ratio
    assert (optimization.warmup_steps, floor) == (2, pytest.approx(1e-4))  # TINY_TRAIN on the demo config
    rows = [row for row in read_history(run_dir / "logs" / "training_history.csv") if row["learning_rate"] is not None]
    steps, rates = [row["step"] for row in rows], [row["learning_rate"] for row in rows]
    assert steps == [1, 2, 4, 6, 8, 10, 12]
    assert rates == pytest.approx([_cosine_schedule(s, peak, floor, 2, STEPS) for s in steps], rel=1e-6)
    assert rates[0] < rates[1] == pytest.approx(peak)  # rises during warmup
    assert all(a > b for a, b in zip(rates[1:], rates[2:], strict=False)) and rates[-1] == pytest.approx(floor)


def test_gradients_reach_the_optimizer_clipped_to_max_grad_norm(tmp_path, trained, trainable_run):
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    arguments = torch.load(trained[0] / "checkpoints" / "checkpoint-12" / "training_args.bin", weights_only=False)
    assert arguments.max_grad_norm == 1.0  # the config's default (N1), as the real run's Trainer had it
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    run_dir = copy_run(trainable_run, tmp_path)
    hook = register_optimizer_step_pre_hook(record)  # runs after the Trainer's clipping, before AdamW steps
    try:
        assert main(pretrain_args(run_dir, "--training-max-steps", "2", "--optimization-warmup-steps", "1",
                                   "--optimization-max-grad-norm", "0.05")) == 0
    finally:
        hook.remove()
    logged = [row["grad_norm"] for row in read_history(run_dir / "logs" / "training_history.csv") if row["grad_norm"]]
    assert len(logged) == 2 and min(logged) > 0.5  # the norm before clipping, as the Trainer logs it
    assert len(norms) == 2 and norms == pytest.approx([0.05, 0.05], rel=1e-3)


def test_8bit_adam_trains_for_real_when_the_probe_passes(tmp_path, capsys, trainable_run):
    run_dir = copy_run(trainable_run, tmp_path)
    assert main(pretrain_args(run_dir, "--optimization-optimizer", "adamw_8bit", "--training-max-steps", "4")) == 0
    assert "adamw_bnb_8bit" in capsys.readouterr().out  # the plan's optimizer line
    state = torch.load(run_dir / "checkpoints" / "checkpoint-4" / "optimizer.pt", weights_only=False)
    # bitsandbytes' own state format: the moments were kept quantized while training
    assert state["state"] and all("__bnb_optimizer_quant_state__" in entry for entry in state["state"].values())


def test_8bit_adam_falls_back_to_fused_adamw_with_the_reason_when_the_probe_fails(tmp_path, capsys, monkeypatch,
                                                                                  trainable_run):
    import bitsandbytes

    def broken(*args, **kwargs):
        raise RuntimeError("The installed version of bitsandbytes was compiled without GPU support")

    monkeypatch.setattr(bitsandbytes.optim, "Adam8bit", broken)
    run_dir = copy_run(trainable_run, tmp_path)
    assert main(pretrain_args(run_dir, "--optimization-optimizer", "adamw_8bit", "--training-max-steps", "4")) == 0
    out = capsys.readouterr().out  # the plan's optimizer line
    assert "8-bit Adam unavailable (RuntimeError: The installed version of bitsandbytes was compiled without GPU " \
           "support); using adamw_torch_fused" in out
    assert (run_dir / "model" / "model.safetensors").exists()
