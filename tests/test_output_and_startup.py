"""What a command prints into a log file and how fast it starts: progress as plain lines (PITFALLS.md NU13),
the bar's loss of every step (NU18), no torch or transformers import for `--help` and `plan` (NU14), and
each command's own options first in its help (NU16)."""

import ast
import io
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from gpt2zh import console
from gpt2zh.cli import main
from gpt2zh.hardware import facts
from tests.conftest import REPO

HEAVY_LIBRARIES = ("torch", "transformers", "datasets")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_in_a_log_file_is_a_plain_line_per_tenth_and_never_a_carriage_return(capsys, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(console, "monotonic", clock)
    with console.progress(100, "B", "tokenizing", scale=True) as bar:  # stderr is captured: not a terminal
        for _ in range(100):
            clock.now += 1.0  # a tenth every 10 s
            bar.update(1)
    slow = capsys.readouterr().err
    with console.progress(100, "B", "reading", scale=True) as bar:
        for _ in range(100):
            bar.update(1)  # all within the same instant: only the closing line
    quick = capsys.readouterr().err
    assert "\r" not in slow + quick
    lines = slow.splitlines()
    assert len(lines) == 10 and all(line.startswith("tokenizing: ") for line in lines), slow
    assert lines[0].startswith("tokenizing: 10 % (10.0 of 100B), 00:10 elapsed, about 01:30 left")
    assert lines[-1].startswith("tokenizing: 100 % (100 of 100B), 01:40 elapsed")
    assert quick.splitlines() == [quick.strip()] and quick.startswith("reading: 100 %")


def test_progress_in_a_log_file_writes_a_line_a_minute_when_a_tenth_takes_longer(capsys, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(console, "monotonic", clock)
    bar = console.progress(1000, "steps", "training")
    for _ in range(30):
        clock.now += 10.0  # 300 s for 3 % of the work
        bar.update(1)
    assert len(capsys.readouterr().err.splitlines()) == 5  # at 60, 120, ... 300 s
    bar.close()
    assert capsys.readouterr().err == ""  # nothing new since the last line


def test_progress_under_quiet_writes_nothing_also_in_a_log_file(capsys):
    """--quiet sets the gpt2zh logger to WARNING, as on ranks other than 0: no progress lines either."""
    logger = logging.getLogger(console.LOGGER_NAME)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with console.progress(10, "steps", "training") as bar:  # stderr is captured: not a terminal
            for _ in range(10):
                bar.update(1)
    finally:
        logger.setLevel(level)
    assert capsys.readouterr().err == ""


def test_progress_of_a_resumed_run_counts_its_rate_and_time_left_from_the_resume(capsys, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(console, "monotonic", clock)
    with console.progress(100, "steps", "training", initial=50) as bar:  # 50 steps done before the resume
        for _ in range(10):
            clock.now += 10.0  # 0.1 steps/s since the resume
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["training: 56 % (56 of 100 steps), 01:00 elapsed, about 07:20 left, 0.1 steps/s",  # a minute
                     "training: 60 % (60 of 100 steps), 01:40 elapsed, about 06:40 left, 0.1 steps/s"], lines  # close


def test_stage_3_in_a_log_file_writes_progress_lines_with_the_loss_and_no_carriage_return(trained):
    _, result = trained  # the real command, its stderr a pipe
    assert "\r" not in result.stderr and "\r" not in result.stdout
    assert re.search(r"^training: 100 % \(12 of 12 steps\), \d\d:\d\d elapsed, .*, loss=\d+\.\d{3}, lr=",
                     result.stderr, re.MULTILINE), result.stderr


def test_an_error_after_a_bar_interrupted_on_a_terminal_starts_on_a_line_of_its_own(monkeypatch):
    """PITFALLS.md FS3: on a terminal the bar is tqdm's, a line without its end until it is closed."""
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = console.progress(10, "B", "hashing")
    bar.update(3)
    console.close_progress_bars()  # what cli.main does before printing an error
    print("error: disk full", file=sys.stderr)
    before = terminal.getvalue().split("error: disk full")[0]
    assert "\r" in before and before.endswith("\n"), repr(before)


def _train_tiny(tmp_path, logging_steps: int, rates: dict | None = None) -> tuple[dict[int, str], dict[int, float]]:
    """Four optimizer steps of 2 micro-batches of a 2-layer GPT-2: (bar's loss at each step, logged losses);
    rates: filled with the bar's learning rate at each step."""
    from transformers import TrainerCallback, TrainingArguments
    from transformers.trainer_callback import ProgressCallback

    from gpt2zh.training.data import BlockCollator
    from gpt2zh.training.schedule import Schedule
    from gpt2zh.training.trainer import PretrainTrainer, TrainingProgress
    from tests.tiny_models import tiny_gpt2

    rng = np.random.default_rng(0)
    blocks = [{"input_ids": rng.integers(0, 64, 16).astype(np.uint16)} for _ in range(32)]
    args = TrainingArguments(output_dir=str(tmp_path / f"every-{logging_steps}"), max_steps=4,
                             per_device_train_batch_size=2, gradient_accumulation_steps=2, learning_rate=1e-2,
                             logging_steps=logging_steps, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                             remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=False)
    trainer = PretrainTrainer(model=tiny_gpt2(64, seed=0), args=args, train_dataset=blocks,
                              data_collator=BlockCollator(), stream_seed=0, samples_per_step=4, resume_step=0,
                              max_nonfinite=10, schedule=Schedule("cosine", 1, 4, 0.1))
    progress = TrainingProgress(trainer.step_loss)
    shown: dict[int, str] = {}

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            shown[state.global_step] = progress.latest.get("loss")
            if rates is not None:
                rates[state.global_step] = progress.latest.get("lr")

    assert trainer.pop_callback(ProgressCallback) is not None  # as stage 3 replaces it
    trainer.add_callback(progress)
    trainer.add_callback(Watch())
    trainer.train()
    logged = {row["step"]: row["loss"] for row in trainer.state.log_history if "loss" in row}
    return shown, logged


def test_the_training_bar_shows_each_steps_own_loss_and_rate_also_between_logging_steps(tmp_path):
    from gpt2zh.training.schedule import Schedule

    rates: dict[int, str] = {}
    shown, _ = _train_tiny(tmp_path, logging_steps=2, rates=rates)  # a log at steps 2 and 4 only
    schedule = Schedule("cosine", 1, 4, 0.1)  # the rate each step trained at, not the next step's
    assert rates == {step: f"{1e-2 * schedule.factor(step):.1e}" for step in (1, 2, 3, 4)}, rates
    _, every_step = _train_tiny(tmp_path, logging_steps=1)  # the same steps, each logged alone
    assert sorted(shown) == [1, 2, 3, 4] and len(set(shown.values())) == 4
    assert all(abs(float(shown[step]) - every_step[step]) < 6e-4 for step in shown), (shown, every_step)


def test_help_and_plan_start_without_importing_torch_transformers_or_datasets(tmp_path):
    """The GPU is hidden, as on a machine without one: torch is then not needed for the facts either."""
    script = ("import sys\nfrom gpt2zh.cli import main\n"
              f"for argv in (['--help'], ['evaluate', '--help'], ['plan', '--run-dir', {str(tmp_path)!r}]):\n"
              "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
              f"print([name for name in {HEAVY_LIBRARIES!r} if name in sys.modules])\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr
    assert "compute-optimal" in result.stdout  # the plan was printed
    assert ast.literal_eval(result.stdout.strip().splitlines()[-1]) == []


def _no_driver_here(monkeypatch, tmp_path) -> None:
    """Linux with the driver's files and tools looked for under tmp_path only, CUDA_VISIBLE_DEVICES unset."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(facts, "GPU_DRIVER_PATHS", (str(tmp_path / "nvidiactl"),))
    monkeypatch.setattr(facts, "GPU_DRIVER_TOOLS", ("nvidia-smi",))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))


def test_no_gpu_is_possible_on_linux_without_a_driver_or_on_macos_and_torch_is_asked_otherwise(monkeypatch, tmp_path):
    """PITFALLS.md NU14: what decides whether the facts import torch."""
    _no_driver_here(monkeypatch, tmp_path)
    assert facts.no_gpu_possible()
    monkeypatch.setattr(sys, "platform", "darwin")
    assert facts.no_gpu_possible()
    monkeypatch.setattr(sys, "platform", "win32")  # no driver files to look for: torch decides
    assert not facts.no_gpu_possible()
    monkeypatch.setattr(sys, "platform", "linux")
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert not facts.no_gpu_possible()  # a driver's tool
    tool.unlink()
    (tmp_path / "nvidiactl").write_text("")
    assert not facts.no_gpu_possible()  # a driver's file
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert facts.no_gpu_possible()  # every device hidden


OWN_OPTIONS = {"evaluate": "--model M", "plan": "--json", "show-config": "--get KEY", "doctor": "--json",
               "generate": "--model M"}


@pytest.mark.parametrize("command", sorted(OWN_OPTIONS))
def test_each_commands_help_lists_its_own_options_before_the_shared_ones(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    usage, listing = text.split("\n\n", 1)
    lines = [line.strip() for line in listing.splitlines()]
    own = next(i for i, line in enumerate(lines) if line.startswith(OWN_OPTIONS[command]))
    assert own < lines.index("common:"), text
    assert usage.index(OWN_OPTIONS[command].split()[0]) < usage.index("--run-dir" if "--run-dir" in usage else
                                                                      "--cache-dir")
