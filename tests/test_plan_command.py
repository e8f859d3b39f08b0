"""`gpt2zh plan` and `show-config` print exactly what stage 3 uses: one resolution of the config (defaults <
--config < preset < command line), the same plan lines, and the README's preset table is their output."""

import json
import re

import pytest
import yaml

from gpt2zh.cli import main
from gpt2zh.hardware.presets import available_presets
from tests.conftest import REPO, TINY_DATA, TINY_TRAIN, fabricate, one_error_line, run_cli

PLAN_KEYS = {"per_device_batch_size", "gradient_accumulation_steps", "processes", "global_batch_size",
             "activation_checkpointing", "optimizer", "precision", "gpu_memory_gib", "memory_gib",
             "tokens_per_second_estimate", "hours_estimate"}
MEMORY_PARTS = {"total", "weights", "gradients", "optimizer_states", "activations", "logits_and_loss", "reserve"}


@pytest.fixture(autouse=True)
def _cpu_machine(monkeypatch):
    """In-process commands see this 2-core CPU machine whatever the host has (subprocess tests run on the host)."""
    from gpt2zh.hardware import facts

    monkeypatch.setattr(facts, "collect_facts", lambda: fabricate("cpu"))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_config_prints_the_config_stage_3_trained_with_its_preset_applied(trained):
    """The CPU preset's precision (fp32) is in both, where show-config used to print the config's auto."""
    run_dir, result = trained
    shown = run_cli("show-config", "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# preset cpu (auto: this machine has no CUDA GPU)\n")
    used = yaml.safe_load((run_dir / "model" / "run_config.yaml").read_text(encoding="utf-8"))
    assert yaml.safe_load(shown.stdout) == used
    assert used["training"]["precision"] == "fp32" and used["training"]["tf32"] is False  # from the preset


def test_stage_3_prints_the_lines_gpt2zh_plan_prints_on_stdout_beside_its_summary(trained):
    """One stream for the plan and the summary (PITFALLS.md NU13): a log of stdout has both, in order."""
    run_dir, result = trained
    planned = run_cli("plan", "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN)
    assert planned.returncode == 0, planned.stderr
    printed = [line.split("pretrain: ", 1)[1] for line in result.stdout.splitlines() if line.startswith("pretrain: ")]
    lines = planned.stdout.strip().splitlines()
    lines = [line for line in lines if not line.startswith("warning: ")]  # stage 3's go to stderr with the others
    assert len(lines) > 10 and printed == lines, set(lines) ^ set(printed)
    assert result.stdout.index(f"pretrain: {lines[0]}") < result.stdout.index("── pretrain: done")
    assert lines[1] not in result.stderr
    summary = json.loads((run_dir / "model" / "training_summary.json").read_text(encoding="utf-8"))
    assert summary["memory"]["estimate_gib"]["total"] > 0 and summary["memory"]["measured_peak_gib"] is None


def test_show_config_sources_names_the_layer_of_every_field(capsys):
    code, out, _ = _run(capsys, "show-config", "--sources", "--training-max-steps", "70", "--run-dir", "/nonexistent")
    assert code == 0
    assert "  per_device_batch_size: 16  # preset cpu, which replaced 8 from " in out
    typed = _run(capsys, "show-config", "--sources", "--training-per-device-batch-size", "4", "--training-precision",
                 "bf16", "--run-dir", "/nonexistent")[1]  # the command line wins over the preset, and says so
    assert "  per_device_batch_size: 4  # the command line" in typed
    assert "  precision: bf16  # the command line" in typed
    assert "  precision: fp32  # preset cpu" in out
    assert "  max_steps: 70  # the command line" in out
    assert "  n_layer: 4  # " in out and "demo.yaml" in out.split("  n_layer: 4  # ")[1].splitlines()[0]
    assert "  adam_beta1: 0.9  # the default" in out
    fields = sum(len(values) for values in yaml.safe_load(out).values())
    assert fields == sum(1 for line in out.splitlines() if line.startswith("  ") and "  # " in line)


def test_plan_json_has_the_batch_split_memory_parts_and_time_for_a_preset_gpu_on_any_machine(capsys):
    code, out, _ = _run(capsys, "plan", "--config", "gpt2-medium", "--preset", "rtx4090", "--json",
                        "--run-dir", "/nonexistent")
    record = json.loads(out)
    assert code == 0 and set(record) >= PLAN_KEYS and set(record["memory_gib"]) == MEMORY_PARTS
    assert record["per_device_batch_size"] * record["gradient_accumulation_steps"] * record["processes"] == \
        record["global_batch_size"] == 480
    assert record["gpu_memory_gib"] == 23.6 and record["memory_gib"]["total"] <= 23.6 * 0.9
    assert record["hours_estimate"] > 0 and record["tokens_per_second_estimate"] > 0
    assert "instead of this machine" in record["preset"] and record["precision"] == "bf16"
    assert record["attention"] == "flash_attention_2" and record["torch_compile"] is True  # the card's software
    eight_bit = json.loads(_run(capsys, "plan", "--config", "gpt2-large", "--preset", "t4", "--json",
                                "--optimization-optimizer", "adamw_8bit")[1])
    assert eight_bit["optimizer"] == "adamw_bnb_8bit"
    assert eight_bit["reasons"]["optimizer"].endswith("assumed on the preset's card; stage 3 probes it there")
    assert record["parameters"] == 336_128_000 and record["compute_optimal_steps"] == 13_678


def test_plan_for_several_processes_keeps_the_global_batch_and_adds_the_ddp_buckets(capsys):
    one = json.loads(_run(capsys, "plan", "--config", "gpt2-small", "--preset", "a100-80g", "--json")[1])
    eight = json.loads(_run(capsys, "plan", "--config", "gpt2-small", "--preset", "a100-80g", "--json",
                            "--processes", "8")[1])
    assert eight["processes"] == 8 and eight["global_batch_size"] == one["global_batch_size"] == 480
    assert eight["per_device_batch_size"] * eight["gradient_accumulation_steps"] == 60
    assert eight["memory_gib"]["gradients"] == pytest.approx(2 * one["memory_gib"]["gradients"], abs=0.01)
    assert eight["hours_estimate"] == pytest.approx(one["hours_estimate"] / 8, rel=0.01)
    medium = json.loads(_run(capsys, "plan", "--config", "gpt2-medium", "--preset", "a100-80g", "--json",
                             "--processes", "8", "--no-training-chunked-loss")[1])
    # with the plain loss 60 a process do not fit: a divisor of 60, not of 480
    assert medium["global_batch_size"] == 480 and 60 % medium["per_device_batch_size"] == 0
    assert medium["per_device_batch_size"] < 60
    rows = json.loads(_run(capsys, "plan", "--config", "gpt2-small", "--all-presets", "--json", "--processes", "8")[1])
    assert {(row["processes"], row["global_batch_size"]) for row in rows} == {(8, 480)}


def test_plan_for_several_processes_on_this_machine_gives_each_its_own_gpu(capsys, monkeypatch):
    from gpt2zh.hardware import facts

    monkeypatch.setattr(facts, "collect_facts", lambda: fabricate("a100-80g"))  # one A100 here, plan for four
    record = json.loads(_run(capsys, "plan", "--config", "gpt2-small", "--json", "--processes", "4")[1])
    assert (record["processes"], record["global_batch_size"], record["device"]) == (4, 480, "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(facts, "collect_facts", lambda: fabricate("t4", count=2))  # Kaggle's 2 x T4, no torchrun
    code, out, err = _run(capsys, "plan", "--config", "gpt2-small", "--json")
    assert code == 0 and json.loads(out)["processes"] == 2 and "torchrun --nproc_per_node 2" in err


def test_plan_warns_when_the_learning_rate_is_far_above_the_reference_for_the_model_size(capsys):
    _, out, _ = _run(capsys, "plan", "--config", "gpt2-large", "--preset", "a100-80g",
                     "--optimization-learning-rate", "6e-4")
    assert "warning: optimization.learning_rate 0.0006 is 2.4 x the reference 0.00025 for 751 M parameters" in out
    medium = _run(capsys, "plan", "--config", "gpt2-medium", "--optimization-learning-rate", "6e-4")[1]
    assert "warning: optimization.learning_rate 0.0006 is 1.9 x the reference" in medium  # small's rate
    for name in ("gpt2-small", "gpt2-medium", "gpt2-large", "demo"):  # the shipped configs do not warn
        assert "warning:" not in _run(capsys, "plan", "--config", name, "--preset", "a100-80g")[1], name


def test_the_reference_learning_rate_is_gpt3s_interpolated_on_a_log_scale_and_warned_above_1_5_times():
    import math

    from gpt2zh.training.plan_report import learning_rate_warning, reference_learning_rate

    assert reference_learning_rate(125_000_000) == 6e-4 and reference_learning_rate(760_000_000) == 2.5e-4
    assert reference_learning_rate(int(math.sqrt(125e6 * 350e6))) == pytest.approx(math.sqrt(6e-4 * 3e-4), rel=1e-6)
    assert reference_learning_rate(int(math.sqrt(350e6 * 760e6))) == pytest.approx(math.sqrt(3e-4 * 2.5e-4), rel=1e-6)
    assert reference_learning_rate(50_000_000) is None  # below GPT-3's smallest model: no reference
    assert learning_rate_warning(125_000_000, 1.4 * 6e-4) is None
    assert "1.6 x the reference" in learning_rate_warning(125_000_000, 1.6 * 6e-4)


def test_the_learning_rate_warning_is_given_before_stage_1(caplog, tmp_path):
    from gpt2zh.config.loader import read_yaml_mapping
    from gpt2zh.preflight import preflight
    from gpt2zh.resolution import resolve
    from gpt2zh.rundir import RunDir
    from gpt2zh.stages import STAGES, StageRequest

    path = REPO / "configs" / "gpt2-large.yaml"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("今天天气很好，我们去公园散步。\n" * 20000, encoding="utf-8")
    # a global batch this small corpus can fill (PITFALLS.md NU7 refuses gpt2-large's 480 blocks before stage 1)
    command_line = {"data.files": [str(corpus)], "optimization.learning_rate": 6e-4, "training.global_batch_size": 8}
    request = StageRequest(resolve((str(path), read_yaml_mapping(path)), command_line, fabricate("a100-80g")),
                           RunDir(tmp_path / "run"), overrides=command_line)
    preflight(request, [(info, False) for info in STAGES[:3]])
    assert any("2.4 x the reference" in record.getMessage() and record.levelname == "WARNING"
               for record in caplog.records)


def test_plan_refuses_an_unknown_preset_and_a_bad_process_count_in_one_line():
    for argv, where in ((["--preset", "a100"], "--preset"), (["--processes", "0"], "--processes")):
        result = run_cli("plan", *argv)
        assert result.returncode != 0 and one_error_line(result.stderr) and where in result.stderr
        assert "Traceback" not in result.stderr


def _table(capsys, config: str) -> str:
    code, out, _ = _run(capsys, "plan", "--config", config, "--all-presets", "--run-dir", "/nonexistent")
    assert code == 0
    return out


@pytest.mark.parametrize("config", ["gpt2-small", "gpt2-medium", "gpt2-large"])
def test_the_readme_preset_table_is_the_output_of_plan_all_presets(capsys, config):
    table = _table(capsys, config)
    rows = [line for line in table.splitlines() if re.match(r"\| [a-z0-9-]+ \|", line)][1:]  # after the header
    assert [row.split(" | ")[0][2:] for row in rows] == available_presets()
    assert table in (REPO / "README.md").read_text(encoding="utf-8"), \
        f"README.md is out of date: paste `gpt2zh plan --config {config} --all-presets`"


def test_help_shows_the_value_each_command_would_use_and_the_layer_that_set_it(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help", "--run-dir", "/nonexistent"])
    text = " ".join(capsys.readouterr().out.split())
    assert "[fp32 from preset cpu]" in text  # the preset's, not the config's auto
    assert "[0.9 from the default]" in text and "[4 from demo.yaml]" in text  # model.n_layer


def test_the_run_saves_the_config_without_the_preset_so_another_machine_picks_its_own(trained):
    run_dir, _ = trained
    saved = yaml.safe_load((run_dir / "settings.yaml").read_text(encoding="utf-8"))
    assert saved["training"]["precision"] == "auto" and saved["training"]["tf32"] is True  # not the CPU preset's
    assert saved["training"]["per_device_batch_size"] == 4  # the command line's


def test_values_an_earlier_command_typed_are_credited_to_it_not_to_this_command_line(capsys, tmp_path):
    from gpt2zh.config import Config
    from gpt2zh.run_settings import write_settings

    write_settings(tmp_path, "pretrain", Config(), {"training.max_steps": 700})
    _, out, _ = _run(capsys, "show-config", "--sources", "--run-dir", str(tmp_path), "--training-eval-steps", "7")
    assert f"  max_steps: 700  # an earlier command line (saved in {tmp_path / 'settings.yaml'})" in out
    assert "  eval_steps: 7  # the command line" in out


def test_plan_estimates_the_epochs_from_the_corpus_size_before_stage_2_and_fp32_speed_at_the_tf32_peak(capsys,
                                                                                                       tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("今天天气很好。\n" * 200_000, encoding="utf-8")  # 4.4 MB
    _, out, _ = _run(capsys, "plan", "--config", "gpt2-small", "--data-files", str(corpus), "--run-dir",
                     str(tmp_path / "run"))
    assert "data: stage 2 has not run; 4.4 MB of corpus files are roughly 0.7 M to 1.1 M tokens (4 to 6.7 bytes a " \
           "token), so 4,500 steps are about 2,010.8 to 3,368.0 epochs" in out
    fp32 = json.loads(_run(capsys, "plan", "--config", "gpt2-small", "--preset", "a100-80g", "--json",
                           "--training-precision", "fp32")[1])
    bf16 = json.loads(_run(capsys, "plan", "--config", "gpt2-small", "--preset", "a100-80g", "--json")[1])
    assert fp32["peak_tflops"] == 156.0 and bf16["peak_tflops"] == 312.0  # TF32 runs at half the bf16 rate
    assert fp32["tokens_per_second_estimate"] == pytest.approx(bf16["tokens_per_second_estimate"] / 2, abs=1)
    no_tf32 = json.loads(_run(capsys, "plan", "--config", "gpt2-small", "--preset", "a100-80g", "--json",
                              "--training-precision", "fp32", "--no-training-tf32")[1])
    assert no_tf32["peak_tflops"] == 19.5 and no_tf32["peak"].startswith("A100 dense fp32 peak 19.5 TFLOP/s")


def test_all_presets_refuses_a_preset_and_fails_when_no_preset_can_plan(capsys):
    assert main(["plan", "--all-presets", "--preset", "t4"]) != 0
    assert "--all-presets plans every preset" in capsys.readouterr().err
    code, out, _ = _run(capsys, "plan", "--config", "gpt2-small", "--all-presets", "--processes", "7")
    assert code == 1 and out.count("error: training.global_batch_size 480 is not divisible by 7") == \
        len(available_presets())


def test_config_flag_mistakes_are_one_line_errors_that_name_the_fix():
    for argv, fix in ((["--config"], "expected one argument"), (["--config="], "--config: empty"),
                      (["--config", "configs"], "a directory, not a YAML file"),
                      (["gpt2-small"], "use --config gpt2-small")):
        result = run_cli("plan", *argv)
        assert result.returncode != 0 and one_error_line(result.stderr) and fix in result.stderr, argv


def test_output_cut_short_by_the_reader_ends_without_a_traceback():
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "gpt2zh", "plan", "--config", "gpt2-small", "--all-presets"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read()
    process.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_plan_for_a_short_run_on_a_preset_card_skips_compiling_and_names_loader_workers_as_this_machines(capsys):
    """PITFALLS.md NU15: a 60-step demo on an RTX 4090, planned on this 2-core machine."""
    code, out, _ = _run(capsys, "plan", "--preset", "rtx4090", "--training-max-steps", "60",
                        "--run-dir", "/nonexistent")
    lines = out.splitlines()
    assert code == 0 and lines[1].startswith("1 x NVIDIA GeForce RTX 4090") and "workers" not in lines[1]
    assert "loader workers: min(8, CPU count) of the machine that trains: a setting of the machine, not of the card " \
           "or preset (2 on this machine's 2 CPUs)" in lines
    assert "compile: off (asked for, but see the notes)" in out and "no mode pays back (PITFALLS.md NU15)" in out
    here = _run(capsys, "plan", "--run-dir", "/nonexistent")[1]
    assert "loader workers: 2 = min(8, this machine's 2 CPUs): a setting of the machine, not of the card or preset" \
        in here.splitlines()
    record = json.loads(_run(capsys, "plan", "--config", "gpt2-small", "--preset", "rtx4090", "--json",
                             "--run-dir", "/nonexistent")[1])  # 4,500 steps of GPT-2 small: autotuning pays back
    assert record["dataloader_workers"] == 2 and "machine that trains" in record["reasons"]["loader_workers"]
    assert record["compile_mode"] == "max-autotune" and "4,500-step run" in record["reasons"]["compile"]


def test_the_plan_warns_when_max_steps_repeat_the_datasets_training_blocks_more_than_four_times(capsys, trained):
    """(NU8) On the dataset's real blocks, in `gpt2zh plan` and so in stage 3's plan lines."""
    run_dir = trained[0]
    assert main(["plan", "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN, "--training-max-steps", "100000"]) == 0
    out = capsys.readouterr().out
    epochs = re.search(r"training tokens: 100,000 steps = ([\d.]+) epochs", out)
    assert epochs and float(epochs.group(1)) > 4
    assert f"warning: 100,000 steps are {float(epochs.group(1)):,.0f} epochs of the training split" in out
    blocks = json.loads((run_dir / "dataset" / "stats.json").read_text())["splits"]["train"]["blocks"]
    assert f"use --training-max-steps {4 * blocks // 4:,} (about 4 epochs)" in out  # 4 epochs of 4-block steps
    assert main(["plan", "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN]) == 0  # 12 steps: well under one epoch
    assert "epochs of the training split" not in capsys.readouterr().out
