"""Stage 3: <run-dir>/dataset/ -> checkpoints/, logs/, and the final model/ (safetensors + tokenizer).

Facts first, then decisions: the hardware is probed once, a preset is picked (or refused), the plan
(precision, attention, optimizer, compile, batch split, loader) is derived, and only then is anything
built. Resume is automatic and exact; SIGTERM saves and stops cleanly; non-finite steps are skipped.
"""

import errno
import json
import logging
import shutil
import time
from pathlib import Path

from gpt2zh.config import dump_config
from gpt2zh.console import report_line
from gpt2zh.dataset.loading import dataset_parts, train_blocks
from gpt2zh.errors import UserError
from gpt2zh.fingerprints import training_inputs, weights_inputs
from gpt2zh.hardware.decisions import training_device
from gpt2zh.hub.checkpoint_push import checkpoint_pusher
from gpt2zh.hub.checkpoints import resume_from_hub, wants_hub_checkpoint
from gpt2zh.report import StageReport, context_verdict, human_duration
from gpt2zh.rundir import StageOutput, fingerprint, read_manifest
from gpt2zh.stages import StageRequest
from gpt2zh.training.checkpoints import CheckpointMarker, checkpoint_step, prepare_resume, select_resume
from gpt2zh.training.continuation import (
    continued_schedule,
    keep_previous_model,
    only_the_plan_changed,
    say_process_change,
)
from gpt2zh.training.history import HistoryCallback
from gpt2zh.training.mfu import flops_per_token
from gpt2zh.training.model import adopted_base
from gpt2zh.training.plan import Probe, TrainingPlan, model_shape, plan_training
from gpt2zh.training.plan_report import plan_lines, plan_record
from gpt2zh.training.ranks import barrier, is_main_process, local_world_size
from gpt2zh.training.replacement import keep_replaced_model, resume_under_force
from gpt2zh.training.trackers import log_contents

log = logging.getLogger("gpt2zh")
STAGE = "pretrain"
FROZEN_LOGS = ("training_history.csv", "loss.png", "samples.md")  # copied into model/ (stage 4 pushes them)


def _inputs(run_dir) -> tuple[dict, list[Path], list[dict]]:
    tokenizer = read_manifest(run_dir.stage("tokenizer"))
    if tokenizer is None:
        raise UserError(f"no complete tokenizer in {run_dir.stage('tokenizer')}", "run `gpt2zh train-tokenizer` first")
    parts = dataset_parts(run_dir.stage("dataset"))
    # The file too, where the dataset recorded it (NU17): a tokenizer retrained from the same inputs may give other ids.
    if any(manifest["tokenizer_fingerprint"] != tokenizer["fingerprint"]
           or manifest.get("inputs", {}).get("tokenizer_sha256", tokenizer.get("tokenizer_sha256"))
           != tokenizer.get("tokenizer_sha256") for _, manifest in parts):
        raise UserError(f"{run_dir.stage('dataset')} was built with another tokenizer than "
                        f"{run_dir.stage('tokenizer')}",
                        "rerun `gpt2zh tokenize` (or `gpt2zh run`)")
    return tokenizer, [folder for folder, _ in parts], [manifest for _, manifest in parts]


def _validation_tokens_per_char(folders: list[Path]) -> float:
    tokens = characters = 0
    for folder in folders:
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
        tokens += stats["splits"]["validation"]["tokens"]
        characters += stats["reading"]["validation"]["characters"]
    return tokens / characters if characters else 0.0


def _plan(request: StageRequest, vocab_size: int | None = None, block_size: int | None = None) -> TrainingPlan:
    """The plan for the config resolved at the entry point (preset included, RS15) on its facts."""
    config, facts = request.config, request.resolved.facts
    probe = None
    if config.optimization.optimizer == "adamw_8bit":
        from gpt2zh.hardware.facts import probe_8bit_adam

        probe = Probe(*probe_8bit_adam(training_device(facts)))
    return plan_training(config, facts, local_world_size(), probe, request.resolved.origin,
                         model_shape(config, vocab_size), block_size)


def _fresh_logs(logs_dir: Path) -> None:
    """A run that starts from step 0 keeps the previous run's history beside, not mixed in."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for name in ("training_history.csv", "samples.md"):
        if (logs_dir / name).exists():
            (logs_dir / name).rename(logs_dir / f"{Path(name).stem}.previous-{stamp}{Path(name).suffix}")


def _save_final(staging: Path, trainer, tokenizer_dir: Path, logs_dir: Path, n_positions: int, summary: dict,
                config) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    from gpt2zh.training.samples import TEMPERATURE, TOP_K

    model = trainer.accelerator.unwrap_model(trainer.model)  # no compile wrapper, no `_orig_mod.` keys
    ids = model.config
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=64,
        bos_token_id=ids.bos_token_id, eos_token_id=ids.eos_token_id, pad_token_id=ids.pad_token_id)
    model.save_pretrained(staging)  # safetensors
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer.model_max_length = n_positions
    tokenizer.save_pretrained(staging)
    (staging / "training_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    dump_config(config, staging / "run_config.yaml")  # beside transformers' own config.json
    _freeze_logs(logs_dir, staging)


def _freeze_logs(logs_dir: Path, staging: Path) -> None:
    """The history, plot and samples of the run that made these weights, copied beside them: logs/ is
    rewritten in place by the next run (a crashed `--resume never` restart leaves a partial history
    there), and stage 4 must push what describes this model."""
    for name in FROZEN_LOGS:
        if (logs_dir / name).is_file():
            shutil.copyfile(logs_dir / name, staging / name)


def pretrain(request: StageRequest) -> dict:
    main = is_main_process()
    if not main:
        log.setLevel(logging.WARNING)
    report = StageReport(STAGE)
    run = request.run_dir
    tokenizer_manifest, dataset_folders, dataset_manifests = _inputs(run)
    block_size = dataset_manifests[0]["block_size"]

    config, facts, preset = request.config, request.resolved.facts, request.resolved.preset
    adopted_base(config.model.init_from, tokenizer_manifest, run.stage("tokenizer"))
    if block_size > config.model.n_positions:
        raise UserError(f"the dataset's blocks have {block_size} tokens but model.n_positions is "
                        f"{config.model.n_positions}",
                        f"use --model-n-positions {block_size} or rebuild the dataset with a smaller --data-block-size")
    plan = _plan(request, tokenizer_manifest["vocab_size"], block_size)
    inputs = training_inputs(config, tokenizer_manifest, dataset_manifests, plan.precision)
    weights = weights_inputs(inputs)  # what checkpoints must match; max_steps is only the plan (RA2)
    output = StageOutput(run.stage("model"), "model", fingerprint(inputs), inputs)
    if not request.force and (manifest := output.current_manifest()) is not None:
        log.info("%s: %s is up to date for this dataset and config; skipped (--force retrains from the last "
                 "checkpoint, --force --resume never from scratch)", STAGE, output.final)
        return manifest
    previous = read_manifest(output.final)
    trains_on = only_the_plan_changed(previous, weights)
    if not trains_on:
        output.refuse_replacing(request.replace)
    replaces_model = previous is not None and not trains_on and previous.get("fingerprint") != output.fingerprint
    record = plan_record(config, facts, plan, model_shape(config, tokenizer_manifest["vocab_size"]), block_size,
                         request.resolved.preset_note, train_blocks(dataset_folders), request.resolved.origin)
    for line in plan_lines(record):  # the lines `gpt2zh plan` prints, on stdout as there and as the summary
        if line.startswith("warning: "):  # the log's format adds the prefix again
            log.warning("%s: %s", STAGE, line.removeprefix("warning: "))
        else:
            report_line(f"{STAGE}: {line}")

    if config.hub.push_checkpoints and main:
        from gpt2zh.hub.access import check_push_access

        # before training, not at the first checkpoint
        check_push_access(config.hub.repo_id, config.hub.private, config.hub.provider)
    checkpoints, logs_dir = run.stage("checkpoints"), run.logs
    weights_fingerprint = fingerprint(weights)
    setting = resume_under_force(config.checkpoint.resume, request.replace, checkpoints, weights_fingerprint, weights)
    resume, torn = select_resume(setting, checkpoints, weights_fingerprint, weights)
    from gpt2zh.training.arguments import training_arguments

    args = training_arguments(config, plan, checkpoints)  # creates the process group under torchrun
    if resume is None and setting != "never" and wants_hub_checkpoint(config):  # a new machine: the Hub's (RA4)
        resume_from_hub(config, run, weights_fingerprint, weights, main)
        resume, torn = select_resume(setting, checkpoints, weights_fingerprint, weights)
    schedule = continued_schedule(config, resume)
    if resume is None:
        log.info("%s: learning rate: %s, peak %g", STAGE, schedule.in_words(), config.optimization.learning_rate)
    if main:
        say_process_change(resume, plan.world_size, plan.global_batch_size)
    args.eval_on_start = resume is None  # a resumed run already has its initial evaluation
    if main:
        base = tokenizer_manifest.get("base_model")
        if base and resume is None:  # a missing or changed base is found before earlier checkpoints are moved
            from gpt2zh.models.weights import base_source

            base_source(base)
        prepare_resume(setting, checkpoints, resume, torn,
                       f"from the weights of {base['label']}" if base else "from scratch")
        logs_dir.mkdir(parents=True, exist_ok=True)
        if resume is None:
            _fresh_logs(logs_dir)
    barrier()
    trainer, history, reports, guard, pusher = _build_trainer(
        config, plan, args, run, tokenizer_manifest, dataset_folders, resume, weights, schedule, facts)
    started = time.monotonic()
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise _disk_full(err, checkpoints, main) from None
    finally:
        guard.on_train_end(args, trainer.state, trainer.control)  # signal handlers back, even after an error
        trainer.shut_down_loader_workers()
        if pusher is not None:
            pusher.finish()  # the last checkpoint's upload completes (or is said to have failed) before exit
    train_seconds = time.monotonic() - started
    if (stop := guard.interruption()) is not None:
        raise stop
    if trainer.nonfinite.stopped_at is not None:
        raise trainer.nonfinite.diagnosis(config.optimization.learning_rate, plan.precision)

    step = trainer.state.global_step
    # Decided from the Trainer's own log (every rank has it), never from rank 0's history: a rank that
    # evaluates alone waits forever for the others (F2).
    if not any(entry.get("step") == step and "eval_loss" in entry for entry in trainer.state.log_history):
        trainer.evaluate()  # the final figures always come from the final weights
        trainer.shut_down_loader_workers()
    summary = _summary(config, plan, record, facts, preset, trainer, history, reports.unigram, block_size,
                       tokenizer_manifest, dataset_folders, train_seconds, resume)
    if main:
        reports.refresh(trainer.model, trainer.processing_class, trainer.state.global_step,
                        f"final, step {trainer.state.global_step}")
        if trains_on and (kept := keep_previous_model(output.final)) is not None:
            log.info("%s: the finished model of the shorter run is kept as %s", STAGE, kept)
        if replaces_model and (kept := keep_replaced_model(output.final)) is not None:
            log.info("%s: --force: the model of the replaced run is kept as %s", STAGE, kept)
        with output.build() as staging:
            _save_final(staging, trainer, run.stage("tokenizer"), logs_dir, config.model.n_positions, summary,
                        config)
        _report(report, summary, output.final, logs_dir, config.training.report_to)
    barrier()
    return json.loads((output.final / "manifest.json").read_text(encoding="utf-8")) if main else {}


def _disk_full(err: OSError, checkpoints: Path, main: bool) -> UserError:
    """A full disk mid-checkpoint: the torn checkpoint goes (it frees space), the previous one is intact."""
    from gpt2zh.training.checkpoints import find_last_valid_checkpoint

    last, torn = find_last_valid_checkpoint(checkpoints)
    if main:
        for folder, _ in torn:
            shutil.rmtree(folder, ignore_errors=True)
    kept = (f"{last.name} (step {checkpoint_step(last)}) is intact and the next run resumes from it" if last
            else "no earlier checkpoint exists, so the next run starts over")
    return UserError(f"disk full while saving a checkpoint ({err.filename or checkpoints}); the partial checkpoint was "
                     f"removed; {kept}", f"free space under {checkpoints} (or lower --checkpoint-save-total-limit), "
                     "then rerun the same command")


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


def _build_trainer(config, plan, args, run, tokenizer_manifest, dataset_folders, resume, weights, schedule, facts):
    from transformers import AutoTokenizer, set_seed
    from transformers.trainer_callback import ProgressCallback
    from transformers.trainer_utils import enable_full_determinism
    from transformers.utils import logging as hf_logging

    from gpt2zh.training.data import BlockCollator, load_training_data, unigram_entropy
    from gpt2zh.training.guards import GracefulStop
    from gpt2zh.training.model import build_model, gpt2_config, start_from_base
    from gpt2zh.training.samples import choose_prompts
    from gpt2zh.training.trackers import wants_tensorboard
    from gpt2zh.training.trainer import EvaluationReports, PretrainTrainer, TrainingProgress, tensorboard_callback

    # (G14) every generator seeded before the weights are initialised
    (enable_full_determinism if config.training.full_determinism else set_seed)(config.training.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(run.stage("tokenizer")))
    model = build_model(gpt2_config(config.model, tokenizer_manifest, plan.attention))
    base = start_from_base(model, tokenizer_manifest.get("base_model"), resume)
    train, validation = load_training_data(run.stage("dataset"), config.training.eval_max_blocks)
    unigram = unigram_entropy(validation, tokenizer_manifest["vocab_size"])
    samples_per_step = plan.global_batch_size
    block_size = len(train[0]["input_ids"])
    n_params = sum(p.numel() for p in model.parameters())
    guard = GracefulStop(run.stage("checkpoints"))
    pusher = checkpoint_pusher(config, run) if config.hub.push_checkpoints and is_main_process() else None
    marker = CheckpointMarker(run.stage("checkpoints"), fingerprint(weights), weights,
                              {"schedule": schedule.as_dict(), "world_size": plan.world_size},
                              after=pusher.push if pusher is not None else None)
    trainer_ref = {}
    history = HistoryCallback(
        run.logs / "training_history.csv", tokens_per_step=samples_per_step * block_size, train_blocks=len(train),
        samples_per_step=samples_per_step, tokens_per_char=_validation_tokens_per_char(dataset_folders),
        unigram=unigram, flops_token=flops_per_token(n_params, config.model.n_layer, block_size, config.model.n_embd),
        gpu_name=facts.gpus[0].name if facts.gpus else None, num_gpus=plan.world_size if facts.gpus else 0,
        skipped=lambda: trainer_ref["trainer"].nonfinite.skipped, resume_step=checkpoint_step(resume) if resume else 0,
        memory_estimate_gib=plan.memory.total)
    prompts = choose_prompts(config.training.sample_prompts, config.training.sample_max_new_tokens,
                             run.stage("dataset"), tokenizer, tokenizer_manifest["special_token_ids"]["eos"])
    reports = EvaluationReports(history, run.logs, unigram, prompts,
                                config.training.sample_max_new_tokens, config.training.seed,
                                f"{run.root.name}: {config.model.n_layer} layers x {config.model.n_embd}, "
                                f"{n_params / 1e6:.1f} M parameters")
    callbacks = [guard, marker, history, reports]
    if is_main_process() and wants_tensorboard(config.training.report_to):
        callbacks.append(tensorboard_callback(run.logs / "tensorboard"))
    trainer = PretrainTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=validation, data_collator=BlockCollator(),
        processing_class=tokenizer, callbacks=callbacks, stream_seed=config.training.seed,
        samples_per_step=samples_per_step, resume_step=checkpoint_step(resume) if resume else 0,
        max_nonfinite=config.training.max_nonfinite_steps, schedule=schedule)
    trainer.base_model = base
    trainer_ref["trainer"] = trainer
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(TrainingProgress(trainer.step_loss))
    hf_logging.disable_progress_bar()  # "Writing model shards" at every checkpoint; the training bar stays
    for name in ("transformers.trainer", "transformers.trainer_utils"):
        hf_logging.get_logger(name).addFilter(_drop_false_alarms)
    return trainer, history, reports, guard, pusher


def _summary(config, plan, record, facts, preset, trainer, history, unigram, block_size, tokenizer_manifest,
             dataset_folders, train_seconds, resume) -> dict:
    evals = history.eval_rows()
    first, last = (evals[0], evals[-1]) if evals else ({}, {})
    steps = trainer.state.global_step
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {
        "steps": steps, "max_steps": config.training.max_steps,
        "resumed_from_step": checkpoint_step(resume) if resume else 0,
        "tokens_seen": steps * plan.global_batch_size * block_size, "train_seconds_this_run": round(train_seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()), "block_size": block_size,
        "vocab_size": tokenizer_manifest["vocab_size"], "model": config.model.__dict__.copy(),
        "initial_eval_loss": first.get("eval_loss"), "final_eval_loss": last.get("eval_loss"),
        "final_perplexity": last.get("perplexity"), "final_bits_per_char": last.get("bits_per_char"),
        "unigram_entropy": round(unigram, 4), "skipped_steps": trainer.nonfinite.skipped,
        "preset": preset.name if preset else None,
        "hardware": {"gpus": [g.name for g in facts.gpus], "cpu_count": facts.cpu_count, "world_size": plan.world_size},
        "plan": {key: value for key, value in plan.__dict__.items() if key not in ("notes", "memory", "reasons")},
        "plan_notes": plan.notes, "plan_record": record,
        "memory": {"estimate_gib": plan.memory.as_dict(), "measured_peak_gib": history.gpu_peak_gib,
                   "measured_by": "torch.cuda.max_memory_allocated" if facts.gpus else None},
        "dataset": [str(folder) for folder in dataset_folders],
        "base_model": trainer.base_model,
        "schedule": trainer.schedule.as_dict(),
    }


def _report(report: StageReport, summary: dict, final: Path, logs_dir: Path, report_to: list[str]) -> None:
    initial, last, unigram = summary["initial_eval_loss"], summary["final_eval_loss"], summary["unigram_entropy"]
    resumed = f" (resumed at step {summary['resumed_from_step']})" if summary["resumed_from_step"] else ""
    if base := summary.get("base_model"):
        report.row("started from", f"{base['model']} ({base['weights']})")
    report.row("trained", f"{summary['steps']:,} steps, {summary['tokens_seen']:,} tokens, "
                          f"{summary['parameters'] / 1e6:.1f} M parameters, "
                          f"{human_duration(summary['train_seconds_this_run'])}{resumed}")
    if last is not None:
        fall = f", {100 * (1 - last / initial):.0f}% below the initial {initial:.2f}" if initial else ""
        report.row("validation", f"loss {last:.3f}{fall}; perplexity {summary['final_perplexity']:.1f}; "
                                 f"{summary['final_bits_per_char']:.3f} bits/char")
        report.row("context", context_verdict(last, unigram))
    if summary["skipped_steps"]:
        report.row("skipped", f"{summary['skipped_steps']} steps with a non-finite loss or gradient (not applied)")
    memory = summary.get("memory") or {}
    if memory.get("measured_peak_gib") is not None:  # the memory model's error on this GPU, for the user to see
        estimate = memory["estimate_gib"]
        report.row("memory", f"peak {memory['measured_peak_gib']:.1f} GiB measured (torch.cuda.max_memory_allocated); "
                             f"{estimate['total'] - estimate['reserve']:.1f} GiB estimated (PITFALLS.md PT12)")
    report.row("logs", f"{logs_dir}/ ({log_contents(report_to)})")
    report.row("wrote", f"{final}/ (model.safetensors, config.json, generation_config.json, tokenizer; "
                        "this run's history, loss plot and samples)")
    report.row("try it", f'gpt2zh generate --model {final} "今天"')
    if not summary.get("base_model"):  # a base model's tokenizer may add [CLS] ... [SEP] (the card says how)
        report.row("load it", f"pipeline('text-generation', model={str(final)!r})")
    report.print()
