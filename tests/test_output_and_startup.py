"""What a command prints into a log file and how fast it starts: progress as plain lines (PITFALLS.md NU13),
the bar's loss of every step (NU18), no torch or transformers import for `--help` and `plan` (NU14), and
each command's own options first in its help (NU16)."""

import ast
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from pipeline import console
from pipeline.cli import main
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


def _train_tiny(tmp_path, logging_steps: int) -> tuple[dict[int, str], dict[int, float]]:
    """Four optimizer steps of 2 micro-batches of a 2-layer GPT-2: (bar's loss at each step, logged losses)."""
    from transformers import TrainerCallback, TrainingArguments
    from transformers.trainer_callback import ProgressCallback

    from pipeline.training.data import BlockCollator
    from pipeline.training.schedule import Schedule
    from pipeline.training.trainer import PretrainTrainer, TrainingProgress
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

    assert trainer.pop_callback(ProgressCallback) is not None  # as stage 3 replaces it
    trainer.add_callback(progress)
    trainer.add_callback(Watch())
    trainer.train()
    logged = {row["step"]: row["loss"] for row in trainer.state.log_history if "loss" in row}
    return shown, logged


def test_the_training_bar_shows_each_steps_own_loss_also_between_logging_steps(tmp_path):
    shown, _ = _train_tiny(tmp_path, logging_steps=2)  # a log at steps 2 and 4 only
    _, every_step = _train_tiny(tmp_path, logging_steps=1)  # the same steps, each logged alone
    assert sorted(shown) == [1, 2, 3, 4] and len(set(shown.values())) == 4
    assert all(abs(float(shown[step]) - every_step[step]) < 6e-4 for step in shown), (shown, every_step)


def test_help_and_plan_start_without_importing_torch_transformers_or_datasets(tmp_path):
    """The GPU is hidden, as on a machine without one: torch is then not needed for the facts either."""
    script = ("import sys\nfrom pipeline.cli import main\n"
              f"for argv in (['--help'], ['evaluate', '--help'], ['plan', '--run-dir', {str(tmp_path)!r}]):\n"
              "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
              f"print([name for name in {HEAVY_LIBRARIES!r} if name in sys.modules])\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr
    assert "compute-optimal" in result.stdout  # the plan was printed
    assert ast.literal_eval(result.stdout.strip().splitlines()[-1]) == []


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
