"""Stopping safely: on SIGTERM/SIGINT at the next step boundary with a checkpoint, and after too
many consecutive non-finite steps (each of which is skipped, so no NaN ever reaches the weights)."""

import math
import signal
from dataclasses import dataclass

from transformers import TrainerCallback

from pipeline.errors import UserError
from pipeline.training.ranks import any_rank


class TrainingInterrupted(UserError):
    """A signal stopped training after a checkpoint; exit status 128 + signal number, like the shell."""

    def __init__(self, signal_name: str, signal_number: int, step: int, checkpoint: str):
        super().__init__(f"stopped by {signal_name} at step {step}; checkpoint saved to {checkpoint}",
                         "rerun the same command to resume from it")
        self.exit_code = 128 + signal_number


@dataclass
class NonFiniteTally:
    """Seed 004: a NaN/Inf loss or gradient norm skips the update; too many in a row stop the run."""

    limit: int
    consecutive: int = 0
    skipped: int = 0
    stopped_at: int | None = None

    def record(self, grad_norm: float, step: int) -> bool:
        """True if this step's update must be skipped."""
        if math.isfinite(grad_norm):
            self.consecutive = 0
            return False
        self.consecutive += 1
        self.skipped += 1
        if self.consecutive >= self.limit:
            self.stopped_at = step
        return True

    def diagnosis(self, learning_rate: float, precision: str) -> UserError:
        fp16 = " fp16 overflows easily: loss scaling is on, try --training-precision fp32 to confirm;" \
            if precision == "fp16" else ""
        return UserError(
            f"training stopped at step {self.stopped_at}: {self.consecutive} consecutive steps had a non-finite loss "
            f"or gradient ({self.skipped} skipped in all, none applied to the weights)",
            f"lower --optimization-learning-rate (now {learning_rate:g}; try {learning_rate / 10:g});{fp16} "
            "check the data with `gpt2zh diagnose`; then rerun to resume from the last checkpoint "
            "(PITFALLS.md, seed 004)")


class GracefulStop(TrainerCallback):
    """SIGTERM (preemption, Kaggle's time limit) or Ctrl-C: save at the next step boundary, then stop.

    A second Ctrl-C interrupts at once. Under DDP the decision is shared, so every rank stops at the
    same step and none waits forever for the others.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self.stopped_at: int | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.received = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # a second signal acts at once

    def on_train_begin(self, args, state, control, **kwargs):
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if any_rank(self.received is not None):
            if self.received is None:
                self.received = signal.SIGTERM  # another rank got it
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def on_train_end(self, args, state, control, **kwargs):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def interruption(self, checkpoint: str) -> TrainingInterrupted | None:
        if self.stopped_at is None:
            return None
        return TrainingInterrupted(signal.Signals(self.received).name, self.received, self.stopped_at, checkpoint)
