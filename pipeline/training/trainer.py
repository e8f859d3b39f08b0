"""transformers' Trainer with the pieces this pipeline needs, and nothing rewritten that it already does.

- The training order comes from GlobalStreamSampler (O(1), exact resume; the Trainer's batch
  skipping is off via ignore_data_skip).
- A step whose gradient norm is not finite is skipped: its gradients are dropped before the
  optimizer runs, so AdamW leaves weights and moments untouched (N1).
- The learning-rate schedule never trains a step at rate 0 (pipeline/training/schedule.py).
- DataLoader workers leave a process-group stop signal to the main process (loader_workers.py).
- Evaluation refreshes the loss plot and the samples.
"""

import math
from pathlib import Path

from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from gpt2zh import faults
from gpt2zh.console import progress
from gpt2zh.training.data import GlobalStreamSampler
from gpt2zh.training.guards import NonFiniteTally
from gpt2zh.training.loader_workers import shut_down_workers, workers_obey_only_the_parent
from gpt2zh.training.plots import plot_losses
from gpt2zh.training.ranks import is_main_process
from gpt2zh.training.samples import append_samples, generate_samples
from gpt2zh.training.schedule import Schedule, rate_from_the_schedule, scheduler_for


class PretrainTrainer(Trainer):
    def __init__(self, *args, stream_seed: int, samples_per_step: int, resume_step: int, max_nonfinite: int,
                 schedule: Schedule, **kwargs):
        super().__init__(*args, **kwargs)
        self.schedule = schedule
        self.stream_seed, self.samples_per_step, self.resume_step = stream_seed, samples_per_step, resume_step
        self.nonfinite = NonFiniteTally(limit=max_nonfinite)
        self._step_loss, self._loss_step = None, -1  # the loss of the step being taken, on the device

    def create_scheduler(self, num_training_steps, optimizer=None):
        # The schedule the config describes (re-planned for a new max_steps), with no step at learning rate 0
        # (pipeline/training/schedule.py).
        if self.lr_scheduler is None:
            self.lr_scheduler = scheduler_for(optimizer if optimizer is not None else self.optimizer, self.schedule)
            self._created_lr_scheduler = True  # the Trainer rebuilds it on a later train() call, as its own
        return self.lr_scheduler

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and self.lr_scheduler is not None:
            rate_from_the_schedule(self.lr_scheduler)  # a re-planned schedule's rate from the first resumed step

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return GlobalStreamSampler(len(dataset), self.stream_seed, self.samples_per_step,
                                   start=self.resume_step * self.samples_per_step)

    def get_train_dataloader(self):
        return workers_obey_only_the_parent(super().get_train_dataloader())

    def get_eval_dataloader(self, eval_dataset=None):
        return workers_obey_only_the_parent(super().get_eval_dataloader(eval_dataset))

    def shut_down_loader_workers(self) -> None:
        shut_down_workers(getattr(self, "_eval_dataloaders", {}).values())  # the training loader's went with train()

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # Resumed from the final checkpoint (`--force` on a finished run): the Trainer checks max_steps only
        # after a step, so it would train one step past it; take no batch instead.
        if self.state.global_step >= self.state.max_steps:
            self.control.should_training_stop = True
            return [], None
        return super().get_batch_samples(epoch_iterator, num_batches, device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        step = self.state.global_step + 1
        if model.training:
            faults.pause_in_micro_batch(step)
            if faults.nan_loss_at(step):
                return (result[0] * math.nan, result[1]) if return_outputs else result * math.nan
        return result

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # Each micro-batch's loss comes scaled for accumulation: their sum is the step's loss on this process.
        step = self.state.global_step
        self._step_loss = loss if self._loss_step != step else self._step_loss + loss
        self._loss_step = step
        return loss

    def step_loss(self) -> float | None:
        """The loss of the step just taken, for the progress bar: a copy from the device that costs nothing
        more, since the step already waited for its gradient norm (_get_grad_norm)."""
        return float(self._step_loss) if self._step_loss is not None else None

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm)
        value = float(grad_norm)
        step = self.state.global_step + 1
        if self.nonfinite.record(value, step):
            for parameter in model.parameters():
                parameter.grad = None  # the optimizer skips parameters without a gradient
            if self.nonfinite.stopped_at is not None:
                self.control.should_training_stop = True
        faults.pause_after_step(step)
        return grad_norm

    def _save_optimizer_and_scheduler(self, output_dir):
        faults.pause_in_checkpoint(self.state.global_step)  # between the model weights and the optimizer state
        faults.disk_full_at_checkpoint(self.state.global_step, Path(output_dir))
        super()._save_optimizer_and_scheduler(output_dir)


class EvaluationReports(TrainerCallback):
    """After each evaluation: redraw logs/loss.png and append samples to logs/samples.md (rank 0)."""

    def __init__(self, history, logs_dir: Path, prompts: list[str], max_new_tokens: int, seed: int, title: str):
        self.history, self.logs_dir, self.unigram = history, logs_dir, history.figures.unigram
        self.prompts, self.max_new_tokens, self.seed, self.title = prompts, max_new_tokens, seed, title
        self.sampled_at: int | None = None

    def refresh(self, model, tokenizer, step: int, heading: str) -> None:
        plot_losses(list(self.history.rows.values()), self.unigram, self.logs_dir / "loss.png", self.title)
        if self.prompts and self.sampled_at != step:  # the same weights would give the same samples again
            samples = generate_samples(model, tokenizer, self.prompts, self.max_new_tokens, self.seed)
            append_samples(self.logs_dir / "samples.md", heading, samples)
            self.sampled_at = step

    def on_evaluate(self, args, state, control, model=None, processing_class=None, metrics=None, **kwargs):
        if is_main_process() and metrics and "eval_loss" in metrics:
            heading = f"step {state.global_step} (validation loss {metrics['eval_loss']:.3f})"
            self.refresh(model, processing_class, state.global_step, heading)


def tensorboard_callback(folder: Path) -> TrainerCallback:
    """TensorBoard events in folder for every log, the evaluation after train() included. Given only a
    writer, the callback closes it when training ends and opens the next one in its default folder,
    <output_dir>/runs/<date>_<host>: a stray checkpoints/runs/ beside the checkpoints."""
    from transformers.integrations import TensorBoardCallback

    callback = TensorBoardCallback()
    callback.logging_dir = str(folder)  # what TENSORBOARD_LOGGING_DIR sets, without changing os.environ
    return callback


class TrainingProgress(ProgressCallback):
    """The Trainer's progress bar (plain lines in a log file, PITFALLS.md NU13) with the loss and learning
    rate of the last step, updated every step (step_loss: PretrainTrainer.step_loss), and the latest
    validation loss; instead of a printed dict per log line and a nested bar per evaluation (the figures
    are in logs/training_history.csv)."""

    def __init__(self, step_loss=None):
        super().__init__()
        self.step_loss, self.latest = step_loss, {}

    def _show(self) -> None:
        self.training_bar.set_postfix({key: self.latest[key] for key in ("loss", "lr", "val") if key in self.latest},
                                      refresh=False)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.training_bar = progress(state.max_steps, "steps", "training", initial=state.global_step)
        self.current_step = state.global_step

    def on_step_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        # the rate this step trains at: by its end the scheduler has moved on to the next step's
        self.step_rate = lr_scheduler.get_last_lr()[0] if lr_scheduler is not None else None

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            loss = self.step_loss() if self.step_loss is not None else None
            if loss is not None:
                self.latest["loss"] = f"{loss:.3f}"
            if getattr(self, "step_rate", None) is not None:
                self.latest["lr"] = f"{self.step_rate:.1e}"
            self._show()
        super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        return

    def on_evaluate(self, args, state, control, **kwargs):
        return

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "eval_loss" in logs:
            self.latest["val"] = f"{logs['eval_loss']:.3f}"
            self._show()
