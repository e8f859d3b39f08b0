"""`gpt2zh bench`: variants side by side, each in a process of its own; a failing or stopped variant is one
line in its row and the others still run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gpt2zh.bench.command import child_environment, footnotes, table, variant_flags, variants
from gpt2zh.errors import UserError
from tests.conftest import REPO

TINY = ["--config", "demo", "--model-n-layer", "1", "--model-n-embd", "64", "--model-n-head", "2",
        "--tokenizer-vocab-size", "500", "--data-block-size", "64", "--training-global-batch-size", "4",
        "--training-dataloader-workers", "0", "--steps", "2", "--warmup", "1"]


def _bench(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpt2zh", "bench", *TINY, *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=600, **kwargs)


def test_compare_runs_every_combination_of_the_values_in_order():
    assert variants([]) == [{}]
    assert variants(["training.chunked_loss=true,false", "model.attention=sdpa,eager"]) == [
        {"training.chunked_loss": "true", "model.attention": "sdpa"},
        {"training.chunked_loss": "true", "model.attention": "eager"},
        {"training.chunked_loss": "false", "model.attention": "sdpa"},
        {"training.chunked_loss": "false", "model.attention": "eager"}]


def test_each_value_becomes_the_flag_that_sets_it():
    assert variant_flags("training.chunked_loss", "true") == ["--training-chunked-loss"]
    assert variant_flags("training.chunked_loss", "False") == ["--no-training-chunked-loss"]
    assert variant_flags("model.attention", "eager") == ["--model-attention", "eager"]
    assert variant_flags("optimization.optimizer", "adamw_8bit") == ["--optimization-optimizer", "adamw_8bit"]


@pytest.mark.parametrize(("compare", "message"), [
    ("training.attention=sdpa,eager", "--compare training.attention: no such config key — did you mean "
                                      "model.attention?"),
    ("training.chunked_los=true", "--compare training.chunked_los: no such config key — did you mean "
                                  "training.chunked_loss?"),
    ("training.chunked_loss=yes", "--compare training.chunked_loss=yes: training.chunked_loss is true or false — use "
                                  "training.chunked_loss=true,false"),
    ("training.chunked_loss", "--compare training.chunked_loss: expected KEY=V1,V2 — e.g. --compare "
                              "training.chunked_loss=true,false"),
    ("model.attention=sdpa,flash", "--compare model.attention=flash: expected one of auto, sdpa, flash_attention_2, "
                                   "eager, got 'flash' — see `gpt2zh bench --help` for the values"),
    ("model.n_layer=1,x", "--compare model.n_layer=x: expected an integer, got 'x' — see `gpt2zh bench --help` for "
                          "the values"),
    ("checkpoint.save_steps=1,2", "--compare checkpoint.save_steps: the bench does not use checkpoint settings — "
                                  "compare a key of data, tokenizer, model, training, optimization"),
    ("model.attention=sdpa,sdpa", "--compare model.attention=sdpa,sdpa: model.attention or one of its values is given "
                                  "twice — name each key once, each value once"),
])
def test_a_bad_compare_is_refused_in_one_line_before_anything_runs(compare, message):
    with pytest.raises(UserError) as caught:
        variants([compare])
    assert caught.value.one_line() == message


def test_a_key_compared_twice_is_refused():
    with pytest.raises(UserError) as caught:
        variants(["model.attention=sdpa,eager", "model.attention=eager,sdpa"])
    assert caught.value.one_line().startswith("--compare model.attention=eager,sdpa: model.attention or one of")


def test_on_several_gpus_each_variant_sees_one_unless_the_user_chose():
    assert child_environment(8, {"PATH": "/bin"}) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0"}
    assert child_environment(8, {"CUDA_VISIBLE_DEVICES": "3,4"}) == {"CUDA_VISIBLE_DEVICES": "3,4"}
    assert child_environment(1, {"PATH": "/bin"}) == {"PATH": "/bin"}
    assert child_environment(0, {}) == {}


def test_the_table_has_one_row_a_variant_and_a_failed_one_says_why_in_its_row():
    measured = {"variant": {"training.chunked_loss": "true"}, "steps": 2, "warmup": 1, "tokens_per_step": 256,
                "tokens_per_second": 1234.5, "step_seconds": 0.2074, "mfu": 0.4123, "mfu_peak": "A100 dense bf16 peak",
                "memory": {"measured_gib": 1.234, "measured_by": "torch.cuda.max_memory_allocated",
                           "before_model_gib": None, "estimate_gib": 1.1},
                "final_loss": 6.24351, "parameters": 98496, "plan": {"one_line": "1 x A100", "notes": ["a note"]}}
    failed = {"variant": {"training.chunked_loss": "false"}, "error": "out of memory: CUDA out of memory"}
    stopped = {"variant": {"training.chunked_loss": "false"}, "error": "stopped by Ctrl-C"}
    assert table([measured, failed, stopped]).splitlines() == [
        "| variant | tokens/s | MFU | step s | peak memory GiB | estimate GiB | final loss | plan |",
        "|---|---|---|---|---|---|---|---|",
        "| training.chunked_loss=true | 1,234 | 41.2 % | 0.207 | 1.23 | 1.10 | 6.2435 | 1 x A100 |",
        "| training.chunked_loss=false | failed: out of memory: CUDA out of memory |  |  |  |  |  |  |",
        "| training.chunked_loss=false | stopped by Ctrl-C |  |  |  |  |  |  |"]
    assert footnotes([measured, failed]) == [
        "steps: 2 measured after 1 warm-up", "256 tokens a step, 0.1 M parameters",
        "peak memory: torch.cuda.max_memory_allocated; the estimate is the memory model's, without its CUDA reserve "
        "(PITFALLS.md PT12)", "MFU: A100 dense bf16 peak", "plan: a note"]
    other = {**measured, "variant": {"training.chunked_loss": "false"}, "plan": {"one_line": "", "notes": ["b"]}}
    assert footnotes([measured, other])[-2:] == ["plan: training.chunked_loss=true: a note",
                                                 "plan: training.chunked_loss=false: b"]


def test_on_cpu_the_peak_is_shown_above_what_the_process_held_and_each_size_is_named():
    def row(layers: str, tokens: int, parameters: int, measured: float) -> dict:
        return {"variant": {"model.n_layer": layers}, "steps": 2, "warmup": 1, "tokens_per_step": tokens,
                "tokens_per_second": 100.0, "step_seconds": 1.0, "mfu": None, "mfu_peak": "no MFU on CPU",
                "memory": {"measured_gib": measured, "measured_by": "peak resident memory (ru_maxrss)",
                           "before_model_gib": 0.22, "estimate_gib": 0.0034},
                "final_loss": None, "parameters": parameters, "plan": {"one_line": "CPU", "notes": []}}

    rows = [row("1", 256, 98496, 0.44), row("2", 256, 148000, 0.5)]
    assert table(rows).splitlines()[2] == "| model.n_layer=1 | 100 | - | 1.000 | 0.220 | 0.003 | - | CPU |"
    assert footnotes(rows)[:3] == [
        "steps: 2 measured after 1 warm-up", "model.n_layer=1: 256 tokens a step, 0.1 M parameters",
        "model.n_layer=2: 256 tokens a step, 0.1 M parameters"]
    assert footnotes(rows)[3] == ("peak memory: peak resident memory (ru_maxrss), above the 0.220 GiB the process "
                                  "held before the model; the estimate is the memory model's, without its CUDA "
                                  "reserve (PITFALLS.md PT12)")


def test_the_chunked_and_the_plain_loss_train_the_same_losses_and_each_reports_its_figures():
    result = _bench("--json", "--compare", "training.chunked_loss=true,false")
    assert result.returncode == 0, result.stderr
    chunked, plain = json.loads(result.stdout)["variants"]
    assert (chunked["plan"]["chunked_loss"], plain["plan"]["chunked_loss"]) == (True, False)
    assert chunked["final_loss"] == pytest.approx(plain["final_loss"], abs=1e-3)
    for row in (chunked, plain):
        assert (row["steps"], row["warmup"], row["tokens_per_step"]) == (2, 1, 256)
        assert row["tokens_per_second"] > 0 and row["step_seconds"] > 0
        assert row["mfu"] is None and row["mfu_peak"] == "no MFU on CPU: MFU is measured against a GPU's peak"
        memory = row["memory"]
        assert memory["measured_by"] == "peak resident memory (ru_maxrss)"
        assert memory["measured_gib"] > memory["before_model_gib"] > 0 and memory["estimate_gib"] > 0


def test_a_variant_that_cannot_run_here_is_one_line_in_its_row_and_the_other_still_runs():
    result = _bench("--compare", "training.precision=fp16,fp32")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| training.precision")]
    assert rows[0] == ("| training.precision=fp16 | failed: --training-precision fp16 needs a CUDA GPU — use "
                       "--training-precision fp32 (or auto) on CPU |  |  |  |  |  |  |")
    assert rows[1].startswith("| training.precision=fp32 | ") and "failed" not in rows[1]
    assert "Traceback" not in result.stdout + result.stderr


def test_ctrl_c_stops_the_running_variant_only_and_the_next_one_still_runs(tmp_path):
    """A real SIGINT to the bench's process group, as a terminal sends it, while each variant is in its second
    step (GPT2ZH_FAULTS pauses there and writes the step into a flag file)."""
    flag = tmp_path / "paused"
    faults = json.dumps({"pause_after_step": [2, 60], "pause_flag": str(flag)})
    bench = subprocess.Popen([sys.executable, "-m", "gpt2zh", "bench", *TINY, "--json", "--compare",
                              "training.chunked_loss=true,false"], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={**os.environ, "GPT2ZH_FAULTS": faults})
    for _ in range(2):
        deadline = time.monotonic() + 300
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert flag.read_text() == "2"
        flag.unlink()
        os.killpg(bench.pid, signal.SIGINT)
        time.sleep(4)  # past the bench's window for a second Ctrl-C: this one stops only the running variant
    out, err = bench.communicate(timeout=120)
    rows = json.loads(out)["variants"]
    assert [(row["variant"], row["error"]) for row in rows] == [
        ({"training.chunked_loss": "true"}, "stopped by Ctrl-C"),
        ({"training.chunked_loss": "false"}, "stopped by Ctrl-C")]
    assert bench.returncode == 130 and "Ctrl-C again within 3 s stops the bench" in err


def test_ctrl_c_twice_stops_the_bench_and_prints_what_it_has(tmp_path):
    flag = tmp_path / "paused"
    faults = json.dumps({"pause_after_step": [2, 60], "pause_flag": str(flag)})
    bench = subprocess.Popen([sys.executable, "-m", "gpt2zh", "bench", *TINY, "--compare", "model.n_layer=1,2,3"],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, env={**os.environ, "GPT2ZH_FAULTS": faults})
    deadline = time.monotonic() + 300
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(bench.pid, signal.SIGINT)
    time.sleep(1.5)  # within the 3 s the bench waits for a second Ctrl-C
    os.killpg(bench.pid, signal.SIGINT)
    out, _ = bench.communicate(timeout=120)
    rows = [line for line in out.splitlines() if line.startswith("| model.n_layer")]
    assert rows == ["| model.n_layer=1 | stopped by Ctrl-C |  |  |  |  |  |  |",
                    "| model.n_layer=2 | not run: the bench was stopped by Ctrl-C |  |  |  |  |  |  |",
                    "| model.n_layer=3 | not run: the bench was stopped by Ctrl-C |  |  |  |  |  |  |"]
    assert bench.returncode == 130
