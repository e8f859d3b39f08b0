"""The Trainer stage 3 trains with, built from what it decided before: the model (random or a base model's
weights), the data, and the callbacks that stop cleanly, mark and push checkpoints, keep the history and
draw the loss plot and samples."""

import json
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.hardware.peaks import peak_tflops
from gpt2zh.rundir import fingerprint
from gpt2zh.stages import StageRequest
from gpt2zh.training.check import PretrainInputs
from gpt2zh.training.checkpoints import CheckpointMarker, checkpoint_step
from gpt2zh.training.history import HistoryCallback, RunFigures
from gpt2zh.training.hub_push import checkpoint_pusher
from gpt2zh.training.mfu import flops_per_token
from gpt2zh.training.plan import TrainingPlan
from gpt2zh.training.ranks import is_main_process
from gpt2zh.training.schedule import Schedule


@dataclass(frozen=True)
class Training:
    """What stage 3 decided before it builds the Trainer."""
    request: StageRequest
    inputs: PretrainInputs
    plan: TrainingPlan
    record: dict               # the plan as `gpt2zh plan --json` prints it
    weights: dict              # what checkpoints must match; max_steps is only the plan (RA2)
    resume: Path | None = None
    schedule: Schedule | None = None


@dataclass(frozen=True)
class Built:
    """The Trainer, and the callbacks stage 3 asks after training."""
    trainer: object  # training/trainer.py:PretrainTrainer
    history: HistoryCallback
    reports: object  # training/trainer.py:EvaluationReports
    guard: object    # training/guards.py:GracefulStop
    pusher: object   # training/hub_push.py:CheckpointPusher, on the main process when checkpoints are pushed


def _validation_tokens_per_char(folders: list[Path]) -> float:
    tokens = characters = 0
    for folder in folders:
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
        tokens += stats["splits"]["validation"]["tokens"]
        characters += stats["reading"]["validation"]["characters"]
    return tokens / characters if characters else 0.0


def _drop_false_alarms(record) -> bool:
    """Two Trainer warnings that are wrong for this pipeline and alarm users on every resume."""
    message = record.getMessage()
    # lm_head.weight is tied to wte, so a checkpoint never stores it; the tie restores it (resume is bit-exact).
    if message.startswith("There were missing keys in the checkpoint") and "'lm_head.weight'" in message \
            and message.count("'") == 2:
        return False
    # Another per-device batch is how the same global batch is split over another number of processes (RA3);
    # other logging, evaluation or save intervals are simply used from now on.
    if message.startswith("Warning: The following arguments do not match the ones in the `trainer_state.json`"):
        return False
    # A run resumed from its final checkpoint takes no step on purpose (PretrainTrainer.get_batch_samples).
    return not message.startswith("There seems not to be a single sample in your epoch_iterator")


def _history(training: Training, n_params: int, train, validation, skipped) -> HistoryCallback:
    from gpt2zh.training.data import unigram_entropy

    config, plan, facts = training.request.config, training.plan, training.request.resolved.facts
    block_size = len(train[0]["input_ids"])
    peak, peak_note = peak_tflops(facts.gpus[0].name if facts.gpus else None, plan.precision, plan.tf32)
    figures = RunFigures(
        tokens_per_step=plan.global_batch_size * block_size, train_blocks=len(train),
        samples_per_step=plan.global_batch_size,
        tokens_per_char=_validation_tokens_per_char(training.inputs.dataset_folders),
        unigram=unigram_entropy(validation, training.inputs.tokenizer.vocab_size),
        flops_token=flops_per_token(n_params, config.model.n_layer, block_size, config.model.n_embd),
        peak_tflops=peak, peak_note=peak_note, num_gpus=plan.world_size if facts.gpus else 0,
        memory_estimate_gib=plan.memory.total)
    return HistoryCallback(training.request.run_dir.logs / "training_history.csv", figures, skipped,
                           checkpoint_step(training.resume) if training.resume else 0)


def _callbacks(training: Training, model, tokenizer, train, validation, skipped) -> tuple[list, Built]:
    """(every callback, the ones stage 3 asks after training); skipped: the Trainer's count of skipped steps."""
    from gpt2zh.training.guards import GracefulStop
    from gpt2zh.training.samples import choose_prompts
    from gpt2zh.training.trackers import wants_tensorboard
    from gpt2zh.training.trainer import EvaluationReports, tensorboard_callback

    config, run, weights = training.request.config, training.request.run_dir, training.weights
    guard = GracefulStop(run.checkpoints)
    pusher = checkpoint_pusher(config, run) if config.hub.push_checkpoints and is_main_process() else None
    marker = CheckpointMarker(run.checkpoints, fingerprint(weights), weights,
                              {"schedule": training.schedule.as_dict(), "world_size": training.plan.world_size},
                              after=pusher.push if pusher is not None else None)
    n_params = sum(p.numel() for p in model.parameters())
    history = _history(training, n_params, train, validation, skipped)
    prompts = choose_prompts(config.training.sample_prompts, config.training.sample_max_new_tokens,
                             run.dataset, tokenizer, training.inputs.tokenizer.eos_id)
    reports = EvaluationReports(history, run.logs, prompts, config.training.sample_max_new_tokens, config.training.seed,
                                f"{run.root.name}: {config.model.n_layer} layers x {config.model.n_embd}, "
                                f"{n_params / 1e6:.1f} M parameters")
    callbacks = [guard, marker, history, reports]
    if is_main_process() and wants_tensorboard(config.training.report_to):
        callbacks.append(tensorboard_callback(run.logs / "tensorboard"))
    return callbacks, Built(None, history, reports, guard, pusher)


def build_trainer(training: Training, args) -> Built:
    from transformers import AutoTokenizer, set_seed
    from transformers.trainer_callback import ProgressCallback
    from transformers.trainer_utils import enable_full_determinism
    from transformers.utils import logging as hf_logging

    from gpt2zh.training.data import BlockCollator, load_training_data
    from gpt2zh.training.model import build_model, gpt2_config, start_from_base
    from gpt2zh.training.trainer import PretrainTrainer, TrainingProgress

    config, run, plan, resume = training.request.config, training.request.run_dir, training.plan, training.resume
    tokenizer_manifest = training.inputs.tokenizer
    # (G14) every generator seeded before the weights are initialised
    (enable_full_determinism if config.training.full_determinism else set_seed)(config.training.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(run.tokenizer))
    model = build_model(gpt2_config(config.model, tokenizer_manifest, plan.attention))
    if plan.chunked_loss:
        from gpt2zh.training.chunked_loss import use_chunked_loss

        use_chunked_loss(model, plan.device)
    base = start_from_base(model, tokenizer_manifest.base_model, resume)
    train, validation = load_training_data(run.dataset, config.training.eval_max_blocks)
    trainer_ref = {}
    callbacks, built = _callbacks(training, model, tokenizer, train, validation,
                                  lambda: trainer_ref["trainer"].nonfinite.skipped)
    trainer = PretrainTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=validation, data_collator=BlockCollator(),
        processing_class=tokenizer, callbacks=callbacks, stream_seed=config.training.seed,
        samples_per_step=plan.global_batch_size, resume_step=checkpoint_step(resume) if resume else 0,
        max_nonfinite=config.training.max_nonfinite_steps, schedule=training.schedule)
    trainer.base_model = base
    trainer_ref["trainer"] = trainer
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(TrainingProgress(trainer.step_loss))
    hf_logging.disable_progress_bar()  # "Writing model shards" at every checkpoint; the training bar stays
    for name in ("transformers.trainer", "transformers.trainer_utils"):
        hf_logging.get_logger(name).addFilter(_drop_false_alarms)
    return Built(trainer, built.history, built.reports, built.guard, built.pusher)
