"""Stage 3: <run-dir>/dataset/ -> checkpoints/, logs/, and the final model/ (safetensors + tokenizer).

Facts first, then decisions: the hardware is probed once, a preset is picked (or refused), the plan
(precision, attention, optimizer, compile, batch split, loader) is derived by the stage's check before the
command's first stage runs (pipeline/training/check.py), and only then is anything built. Resume is chosen
once, automatic and exact; SIGTERM saves and stops cleanly; non-finite steps are skipped.
"""

import errno
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

from gpt2zh.console import report_line
from gpt2zh.dataset.loading import train_blocks
from gpt2zh.errors import UserError
from gpt2zh.fingerprints import training_inputs, weights_inputs
from gpt2zh.manifests import ModelManifest
from gpt2zh.remote.checkpoints import wants_hub_checkpoint
from gpt2zh.report import StageReport
from gpt2zh.rundir import StageOutput, fingerprint
from gpt2zh.stages import StageRequest
from gpt2zh.training.build import Built, Training, build_trainer
from gpt2zh.training.check import PretrainInputs, inputs_and_plan
from gpt2zh.training.checkpoints import checkpoint_step, find_last_valid_checkpoint, prepare_resume, select_resume
from gpt2zh.training.continuation import (
    continued_schedule,
    keep_previous_model,
    only_the_plan_changed,
    say_process_change,
)
from gpt2zh.training.final import report_rows, save_final, summary_of
from gpt2zh.training.hub_resume import resume_from_hub
from gpt2zh.training.plan import TrainingPlan, plan_sizes
from gpt2zh.training.plan_report import plan_lines, plan_record
from gpt2zh.training.ranks import barrier, is_main_process
from gpt2zh.training.replacement import keep_replaced_model, resume_under_force

log = logging.getLogger("gpt2zh")
STAGE = "pretrain"


def _fresh_logs(logs_dir: Path) -> None:
    """A run that starts from step 0 keeps the previous run's history beside, not mixed in."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for name in ("training_history.csv", "samples.md"):
        if (logs_dir / name).exists():
            (logs_dir / name).rename(logs_dir / f"{Path(name).stem}.previous-{stamp}{Path(name).suffix}")


def _output(request: StageRequest, inputs: PretrainInputs, plan: TrainingPlan) -> tuple[StageOutput, dict]:
    """model/ for these inputs and this plan, and what its weights depend on: what checkpoints must match
    (max_steps is only the plan, RA2)."""
    parts = training_inputs(request.config, inputs.tokenizer, inputs.datasets, plan.precision)
    return StageOutput(request.run_dir.model, ModelManifest, fingerprint(parts), parts), weights_inputs(parts)


def _say_plan(request: StageRequest, inputs: PretrainInputs, plan: TrainingPlan) -> dict:
    """The plan as `gpt2zh plan --json` gives it, said in the lines `gpt2zh plan` prints."""
    record = plan_record(request.resolved, plan, plan_sizes(request.config, inputs.tokenizer.vocab_size,
                                                            inputs.block_size), train_blocks(inputs.dataset_folders))
    for line in plan_lines(record):  # the lines `gpt2zh plan` prints, on stdout as there and as the summary
        if line.startswith("warning: "):  # the log's format adds the prefix again
            log.warning("%s: %s", STAGE, line.removeprefix("warning: "))
        else:
            report_line(f"{STAGE}: {line}")
    return record


def _resume_and_arguments(training: Training, main: bool) -> tuple:
    """(TrainingArguments, resume setting, checkpoint to resume from, torn newer checkpoints): the checkpoint is
    chosen once, this run's own newest complete one, or on a new machine the one pushed to the Hub (RA4)."""
    from gpt2zh.training.arguments import training_arguments

    config, run, weights = training.request.config, training.request.run_dir, training.weights
    checkpoints, weights_fingerprint = run.checkpoints, fingerprint(weights)
    setting = resume_under_force(config.checkpoint.resume, training.request.replace, checkpoints,
                                 weights_fingerprint, weights)
    # Decided by every rank before the process group exists: none may see the main process's download.
    from_hub = setting != "never" and wants_hub_checkpoint(config) and \
        find_last_valid_checkpoint(checkpoints)[0] is None
    args = training_arguments(config, training.plan, checkpoints)  # creates the process group under torchrun
    if from_hub:
        resume_from_hub(config, run, weights_fingerprint, weights, main)
    resume, torn = select_resume(setting, checkpoints, weights_fingerprint, weights)
    return args, setting, resume, torn


def _prepare(training: Training, main: bool) -> tuple[Training, object]:
    """The run's resume and schedule, said and prepared (earlier checkpoints and logs moved aside), and its
    TrainingArguments."""
    args, setting, resume, torn = _resume_and_arguments(training, main)
    config, plan, logs_dir = training.request.config, training.plan, training.request.run_dir.logs
    schedule = continued_schedule(config, resume)
    if resume is None:
        log.info("%s: learning rate: %s, peak %g", STAGE, schedule.in_words(), config.optimization.learning_rate)
    if main:
        say_process_change(resume, plan.world_size, plan.global_batch_size)
    args.eval_on_start = resume is None  # a resumed run already has its initial evaluation
    if main:
        base = training.inputs.tokenizer.base_model
        if base and resume is None:  # a missing or changed base is found before earlier checkpoints are moved
            from gpt2zh.models.weights import base_source

            base_source(base)
        prepare_resume(setting, training.request.run_dir.checkpoints, resume, torn,
                       f"from the weights of {base['label']}" if base else "from scratch")
        logs_dir.mkdir(parents=True, exist_ok=True)
        if resume is None:
            _fresh_logs(logs_dir)
    barrier()
    return replace(training, resume=resume, schedule=schedule), args


def _train(training: Training, args, main: bool) -> tuple[Built, float]:
    """The Trainer built and run to max_steps (or a clean stop), ending on an evaluation of the final weights;
    (what was built, seconds of training)."""
    built = build_trainer(training, args)
    trainer, checkpoints = built.trainer, training.request.run_dir.checkpoints
    started = time.monotonic()
    try:
        trainer.train(resume_from_checkpoint=str(training.resume) if training.resume is not None else None)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise _disk_full(err, checkpoints, main) from None
    finally:
        built.guard.on_train_end(args, trainer.state, trainer.control)  # signal handlers back, even after an error
        trainer.shut_down_loader_workers()
        if built.pusher is not None:
            built.pusher.finish()  # the last checkpoint's upload completes (or is said to have failed) before exit
    train_seconds = time.monotonic() - started
    if (stop := built.guard.interruption()) is not None:
        raise stop
    if trainer.nonfinite.stopped_at is not None:
        raise trainer.nonfinite.diagnosis(training.request.config.optimization.learning_rate, training.plan.precision)

    step = trainer.state.global_step
    # Decided from the Trainer's own log (every rank has it), never from rank 0's history: a rank that
    # evaluates alone waits forever for the others (F2).
    if not any(entry.get("step") == step and "eval_loss" in entry for entry in trainer.state.log_history):
        trainer.evaluate()  # the final figures always come from the final weights
        trainer.shut_down_loader_workers()
    return built, train_seconds


def _publish(output: StageOutput, training: Training, built: Built, summary: dict, kept: tuple[bool, bool]) -> None:
    """Main process: the final samples, then model/; kept: (trains on a shorter run's model, replaces another
    run's model), whose model/ is moved aside first."""
    trainer, (trains_on, replaces_model) = built.trainer, kept
    built.reports.refresh(trainer.model, trainer.processing_class, trainer.state.global_step,
                          f"final, step {trainer.state.global_step}")
    if trains_on and (moved := keep_previous_model(output.final)) is not None:
        log.info("%s: the finished model of the shorter run is kept as %s", STAGE, moved)
    if replaces_model and (moved := keep_replaced_model(output.final)) is not None:
        log.info("%s: --force: the model of the replaced run is kept as %s", STAGE, moved)
    with output.build() as staging:
        save_final(staging, trainer, training.request, summary)


def pretrain(request: StageRequest) -> ModelManifest | None:
    main = is_main_process()
    if not main:
        log.setLevel(logging.WARNING)
    report = StageReport(STAGE)
    config = request.config
    inputs, plan = inputs_and_plan(request)
    output, weights = _output(request, inputs, plan)
    if not request.force and (manifest := output.current_manifest()) is not None:
        log.info("%s: %s is up to date for this dataset and config; skipped (--force retrains from the last "
                 "checkpoint, --force --resume never from scratch)", STAGE, output.final)
        return manifest
    previous = ModelManifest.read(output.final)
    trains_on = only_the_plan_changed(previous, weights)
    if not trains_on:
        output.refuse_replacing(request.replace)
    replaces_model = previous is not None and not trains_on and previous.fingerprint != output.fingerprint
    record = _say_plan(request, inputs, plan)
    if config.hub.push_checkpoints and main:
        from gpt2zh.remote.access import check_push_access

        # before training, not at the first checkpoint
        check_push_access(config.hub.repo_id, config.hub.private, config.hub.provider)
    training, args = _prepare(Training(request, inputs, plan, record, weights), main)
    built, train_seconds = _train(training, args, main)
    summary = summary_of(training, built.trainer, built.history, train_seconds)
    if main:
        _publish(output, training, built, summary, (trains_on, replaces_model))
        report_rows(report, summary, output.final, request.run_dir.logs, config.training.report_to)
    barrier()
    return output.published if main else None


def _disk_full(err: OSError, checkpoints: Path, main: bool) -> UserError:
    """A full disk mid-checkpoint: the torn checkpoint goes (it frees space), the previous one is intact."""
    last, torn = find_last_valid_checkpoint(checkpoints)
    if main:
        for folder, _ in torn:
            shutil.rmtree(folder, ignore_errors=True)
    kept = (f"{last.name} (step {checkpoint_step(last)}) is intact and the next run resumes from it" if last
            else "no earlier checkpoint exists, so the next run starts over")
    return UserError(f"disk full while saving a checkpoint ({err.filename or checkpoints}); the partial checkpoint was "
                     f"removed; {kept}", f"free space under {checkpoints} (or lower --checkpoint-save-total-limit), "
                     "then rerun the same command")
