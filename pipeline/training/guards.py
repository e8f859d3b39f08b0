"""Stopping safely: on SIGTERM/SIGINT within one micro-batch with a checkpoint, and after too
many consecutive non-finite steps (each of which is skipped, so no NaN ever reaches the weights)."""

import math
import signal
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from gpt2zh.errors import UserError
from gpt2zh.training.checkpoints import read_marker
from gpt2zh.training.ranks import any_rank


class TrainingInterrupted(UserError):
    """A signal stopped training after a checkpoint; exit status 128 + signal number, like the shell."""

    def __init__(self, signal_name: str, signal_number: int, step: int, checkpoint: Path, dropped: int):
        partial = f" (the {dropped} micro-batch(es) of step {step + 1} done so far were dropped)" if dropped else ""
        if step == 0:
            super().__init__(f"stopped by {signal_name} during step 1; no step was complete, so nothing was saved",
                             "rerun the same command to start again")
        else:
            super().__init__(f"stopped by {signal_name} at step {step}{partial}; checkpoint saved to {checkpoint}",
                             "rerun the same command to resume from it")
        self.exit_code = 128 + signal_number


@dataclass
class NonFiniteTally:
    """(N1) A NaN/Inf loss or gradient norm skips the update; too many in a row stop the run."""

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
            "(PITFALLS.md N1)")


def _rng_states() -> dict:
    import random

    import numpy as np
    import torch

    states = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["cpu"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


class GracefulStop(TrainerCallback):
    """SIGTERM (preemption, Kaggle's time limit) or Ctrl-C: save a checkpoint and stop, within one micro-batch.

    With gradient accumulation an optimizer step can take minutes, longer than the grace period a
    scheduler gives after SIGTERM (30 s for SLURM and Kubernetes). So a signal that arrives mid-step
    stops after the current micro-batch: the partial accumulation is dropped and the state of the last
    completed step is saved (weights, optimizer and schedule have not moved since; the random state is
    put back to what it was when the step began), which resumes exactly. A second signal acts at once.
    Under DDP the decision is shared after every micro-batch, so all ranks stop at the same point.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, checkpoints: Path):
        self.checkpoints = checkpoints
        self.received: int | None = None
        self.stopped_at: int | None = None
        self.dropped_micro_batches = 0
        self._previous = {}
        self._rng_at_step_begin: dict | None = None
        self._micro_batches = 0

    def _handle(self, signum, frame):
        self.received = signum
        signal.signal(signum, self._previous[signum])  # a second signal acts at once

    def on_train_begin(self, args, state, control, **kwargs):
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def on_step_begin(self, args, state, control, **kwargs):
        self._micro_batches = 0
        if args.gradient_accumulation_steps > 1:
            self._rng_at_step_begin = _rng_states()

    def _stopping(self, state, control) -> bool:
        if not any_rank(self.received is not None):
            return False
        if self.received is None:
            self.received = signal.SIGTERM  # another rank got it
        control.should_training_stop = True
        self.stopped_at = state.global_step
        return True

    def on_substep_end(self, args, state, control, **kwargs):
        self._micro_batches += 1
        if self._stopping(state, control):
            self.dropped_micro_batches = self._micro_batches
            done = read_marker(self.checkpoints / f"checkpoint-{state.global_step}") is not None
            if state.global_step > 0 and not done:
                _restore_rng_states(self._rng_at_step_begin)
                control.should_save = True
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self._stopping(state, control):
            control.should_save = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def interruption(self) -> TrainingInterrupted | None:
        if self.stopped_at is None:
            return None
        return TrainingInterrupted(signal.Signals(self.received).name, self.received, self.stopped_at,
                                   self.checkpoints / f"checkpoint-{self.stopped_at}", self.dropped_micro_batches)
