"""logs/training_history.csv: one row per logged step, training and evaluation figures merged.

Columns: step, epoch (passes over the training blocks), loss, learning rate, grad norm, tokens/s,
MFU (GPU only), eval loss, perplexity, bits per character, the unigram baseline, skipped steps, and on a
GPU torch.cuda.max_memory_allocated so far beside the memory model's estimate (its error, on real hardware).
On resume the rows up to the checkpoint's step are kept, so the history reads as one run.
"""

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from gpt2zh.training.data import bits_per_character
from gpt2zh.training.mfu import mfu
from gpt2zh.training.ranks import is_main_process

COLUMNS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second", "mfu", "eval_loss",
           "perplexity", "bits_per_char", "unigram_entropy", "skipped_steps", "gpu_peak_gib", "memory_estimate_gib"]


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _number(text: str):
    if text in ("", None):
        return None
    number = float(text)
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


@dataclass(frozen=True)
class RunFigures:
    """What the history's derived columns are computed from, fixed for the run."""
    tokens_per_step: int
    train_blocks: int
    samples_per_step: int
    tokens_per_char: float           # of the validation split: turns the loss into bits per character
    unigram: float                   # the validation split's unigram entropy, the no-context baseline
    flops_token: float
    peak_tflops: float | None        # one card's peak for the run's precision (hardware/peaks.py), None: no MFU
    num_gpus: int
    memory_estimate_gib: float | None = None
    peak_note: str = ""              # the peak and its source, or why there is no MFU


class HistoryCallback(TrainerCallback):
    def __init__(self, path: Path, figures: RunFigures, skipped: callable, resume_step: int = 0):
        self.path, self.figures, self.skipped = path, figures, skipped
        self.rows = {int(r["step"]): r for r in read_history(path) if r.get("step") is not None
                     and r["step"] <= resume_step}
        self._last: tuple[int, float] | None = None
        self.gpu_peak_gib = None

    def _row(self, step: int) -> dict:
        row = self.rows.setdefault(step, {"step": step})
        row["epoch"] = round(step * self.figures.samples_per_step / self.figures.train_blocks, 4)
        row["unigram_entropy"] = round(self.figures.unigram, 4)
        row["skipped_steps"] = self.skipped()
        return row

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (state.global_step, time.perf_counter())

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs or not is_main_process():
            return
        row = self._row(state.global_step)
        row.update(loss=logs["loss"], learning_rate=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"))
        self._record_memory(row)
        now = time.perf_counter()
        if self._last is not None and state.global_step > self._last[0]:
            rate = (state.global_step - self._last[0]) * self.figures.tokens_per_step / (now - self._last[1])
            row["tokens_per_second"] = round(rate, 1)
            utilisation = mfu(rate, self.figures.flops_token, self.figures.peak_tflops, self.figures.num_gpus)
            row["mfu"] = None if utilisation is None else round(utilisation, 4)
        self._last = (state.global_step, now)
        self.write()

    def _record_memory(self, row: dict) -> None:
        import torch

        if self.figures.num_gpus and torch.cuda.is_available():
            estimate = self.figures.memory_estimate_gib
            self.gpu_peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            row.update(gpu_peak_gib=self.gpu_peak_gib, memory_estimate_gib=round(estimate, 2) if estimate else None)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_loss" not in metrics or not is_main_process():
            return
        loss = metrics["eval_loss"]
        row = self._row(state.global_step)
        row.update(eval_loss=round(loss, 5), perplexity=round(math.exp(min(loss, 50)), 3),
                   bits_per_char=round(bits_per_character(loss, self.figures.tokens_per_char), 4))
        self.write()
        self._last = (state.global_step, time.perf_counter())  # evaluation time is not training throughput

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows[step] for step in sorted(self.rows))
        temporary.replace(self.path)

    def eval_rows(self) -> list[dict]:
        return [self.rows[s] for s in sorted(self.rows) if self.rows[s].get("eval_loss") is not None]
