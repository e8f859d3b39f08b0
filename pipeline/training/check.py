"""Stage 3's check, made before the command's first stage runs (pipeline/preflight.py) and reused by the stage.

It holds what can be known before training: the training plan for this machine (PITFALLS.md PT12: a model that
cannot fit stops here, not after hours of stages 1-2), the schedule, trackers and resume settings, a finished
model or a checkpoint of other settings, and, when stage 2 rebuilds in the same command, whether the corpus can
feed one optimizer step (NU7, NU8). The stage trains with the plan made here unless stage 1 of the same command
made a tokenizer of another vocabulary, and on the inputs read here unless an earlier stage rebuilt them.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.config.schema import Config
from gpt2zh.dataset.check import check_split_sizes, estimated_tokens
from gpt2zh.dataset.loading import dataset_parts
from gpt2zh.errors import UserError
from gpt2zh.fingerprints import training_inputs, weights_inputs
from gpt2zh.hardware.decisions import training_device
from gpt2zh.hardware.presets import HARDWARE_FIELDS
from gpt2zh.input_changes import setting_changes
from gpt2zh.manifests import DatasetManifest, ModelManifest, TokenizerManifest
from gpt2zh.report import human_bytes
from gpt2zh.rundir import refuse_replacing
from gpt2zh.stages import Command, StageRequest
from gpt2zh.training.data_size import many_epochs_warning, refuse_less_than_one_step
from gpt2zh.training.plan import PlanSizes, Probe, TrainingPlan, plan_sizes, plan_training
from gpt2zh.training.plan_report import learning_rate_warning
from gpt2zh.training.ranks import local_world_size
from gpt2zh.training.trackers import check_trackers

log = logging.getLogger("gpt2zh")
STAGE = "pretrain"
UPSTREAM = ("train-tokenizer", "tokenize")


@dataclass(frozen=True)
class PretrainInputs:
    """What stages 1-2 made, as stage 3 trains on it."""
    tokenizer: TokenizerManifest
    dataset_folders: list[Path]
    datasets: list[DatasetManifest]

    @property
    def block_size(self) -> int:
        return self.datasets[0].block_size


@dataclass(frozen=True)
class PretrainCheck:
    plan: TrainingPlan
    sizes: PlanSizes  # the vocabulary and block size the plan was made for
    inputs: PretrainInputs | None  # None: stage 1 or 2 of this command builds them


def read_inputs(request: StageRequest) -> PretrainInputs:
    """The tokenizer and dataset in the run directory, refused unless they belong together and to this config."""
    from gpt2zh.training.model import adopted_base

    run, config = request.run_dir, request.config
    tokenizer = TokenizerManifest.read(run.tokenizer)
    if tokenizer is None:
        raise UserError(f"no complete tokenizer in {run.tokenizer}", "run `gpt2zh train-tokenizer` first")
    adopted_base(config.model.init_from, tokenizer, run.tokenizer)
    parts = dataset_parts(run.dataset)
    # The file too, where the dataset recorded it (NU17): a tokenizer retrained from the same inputs may give other ids.
    if not all(manifest.built_with(tokenizer) for _, manifest in parts):
        raise UserError(f"{run.dataset} was built with another tokenizer than {run.tokenizer}",
                        "rerun `gpt2zh tokenize` (or `gpt2zh run`)")
    inputs = PretrainInputs(tokenizer, [folder for folder, _ in parts], [manifest for _, manifest in parts])
    if inputs.block_size > config.model.n_positions:
        raise UserError(f"the dataset's blocks have {inputs.block_size} tokens but model.n_positions is "
                        f"{config.model.n_positions}", f"use --model-n-positions {inputs.block_size} or rebuild the "
                        "dataset with a smaller --data-block-size")
    return inputs


def make_plan(request: StageRequest, sizes: PlanSizes | None = None) -> TrainingPlan:
    """The plan for the config resolved at the entry point (preset included, RS15) on its facts, with 8-bit Adam
    probed by a real step (G4); sizes None: the config's vocabulary and block size."""
    config, facts = request.config, request.resolved.facts
    probe = None
    if config.optimization.optimizer == "adamw_8bit":
        from gpt2zh.hardware.facts import probe_8bit_adam

        probe = Probe(*probe_8bit_adam(training_device(facts)))
    return plan_training(config, facts, local_world_size(), probe, request.resolved.origin,
                         sizes)


def check_schedule(config: Config) -> None:
    training = config.training
    for name, effect in (("eval_steps", "only the final evaluation (and sample) will run"),
                         ("logging_steps", "the training loss is logged only at the first step")):
        value = getattr(training, name)
        if value > training.max_steps:
            flag = f"--training-{name.replace('_', '-')}"
            log.warning("training.%s (%d) is larger than training.max_steps (%d): %s; use e.g. %s %d",
                        name, value, training.max_steps, effect, flag, max(1, training.max_steps // 4))
    if config.data.validation_fraction == 0:
        raise UserError("data.validation_fraction is 0, but stage 3 evaluates on held-out blocks",
                        "use --data-validation-fraction 0.01 (on a run directory with a dataset, with --force)")


def check_training_size(sources: list, config: Config, adopted_tokenizer: bool = False) -> None:
    """Before stage 2 rebuilds: a corpus too small for one optimizer step of this configuration is refused, and one
    that max_steps repeats more than a few times is warned about (PITFALLS.md NU7, NU8). Estimated as
    check_split_sizes estimates: an upper bound on the tokens, so a refusal is sure and the epochs are at least
    those said."""
    tokens = estimated_tokens(sources, adopted_tokenizer)
    if tokens is None:
        return
    data, training = config.data, config.training
    train_blocks = tokens * (1 - data.validation_fraction) / data.block_size
    what = f"the corpus ({human_bytes(sum(source.size for source in sources))}) at --data-block-size {data.block_size}"
    refuse_less_than_one_step(train_blocks, training.global_batch_size, what)
    if (warning := many_epochs_warning(training.max_steps, training.global_batch_size, train_blocks, True)):
        log.warning("%s", warning)


def _refuse_together(*checks) -> None:
    """Every check runs; their refusals are one line, so that following its advice needs no second refusal."""
    errors = []
    for check in checks:
        try:
            check()
        except UserError as err:
            errors.append(err)
    if len(errors) > 1:
        raise UserError("; and ".join(err.message for err in errors), "; and ".join(err.fix for err in errors))
    if errors:
        raise errors[0]


def _check_corpus_estimate(command: Command) -> None:
    """Stage 2 rebuilds in this command: the corpus must feed one optimizer step and fill the held-out blocks
    (stage 2's check leaves its own estimate to this one, for one refusal of both)."""
    dataset = command.checks.get("tokenize")
    if dataset is None or not dataset.rebuilt:
        return
    config, sources = command.request.config, command.sources
    adopted = bool(config.model.init_from)
    _refuse_together(lambda: check_training_size(sources, config, adopted_tokenizer=adopted),
                     lambda: check_split_sizes(sources, config.data, adopted_tokenizer=adopted))


def _without_hardware(inputs: dict) -> dict:
    """Stage 3's inputs without the fields a GPU preset may set: stage 3 fingerprints the precision its plan
    resolved (auto is fp32 on a CPU), which is known only once the plan is made."""
    config = dict(inputs.get("config", {}))
    config["training"] = {k: v for k, v in config.get("training", {}).items() if k not in HARDWARE_FIELDS}
    return {**inputs, "config": config}


def settings_of_the_weights(inputs: dict) -> dict:
    """Stage 3's inputs narrowed to the settings its weights depend on: no preset fields, no plan for future
    steps (a higher max_steps trains on, PITFALLS.md RA2)."""
    return weights_inputs(_without_hardware(inputs))


def _check_resumed_checkpoint(config: Config, run, replaced_upstream: bool) -> None:
    """A max_steps the last checkpoint is past, or (a new machine's run, no checkpoint here) a Hub checkpoint of
    other settings: refused before stage 1 (PITFALLS.md RA2, RA4). replaced_upstream: --force with stage 1 or 2
    in the command, after which the checkpoints may be another run's that stage 3 moves aside (NU3)."""
    from gpt2zh.remote.checkpoints import refuse_other_settings, wants_hub_checkpoint
    from gpt2zh.training.checkpoints import find_last_valid_checkpoint, read_marker
    from gpt2zh.training.continuation import refuse_fewer_steps

    if config.checkpoint.resume not in ("auto", "hub"):
        return
    if (last := find_last_valid_checkpoint(run.checkpoints)[0]) is not None:
        recorded = (read_marker(last) or {}).get("inputs", {})
        if replaced_upstream or setting_changes(settings_of_the_weights(recorded), settings_of_the_weights(
                training_inputs(config, None, []))):
            return
        refuse_fewer_steps(last, config.training.max_steps)
    elif wants_hub_checkpoint(config):
        refuse_other_settings(config, training_inputs(config, None, []), settings_of_the_weights)


def _upstream(command: Command) -> tuple[TokenizerManifest | None, PretrainInputs | None]:
    """(the tokenizer the plan is for, the inputs) as known before the command's first stage: the inputs only when
    no earlier stage runs in this command; the tokenizer also when stage 1 runs but keeps it."""
    request = command.request
    if command.runs("train-tokenizer"):
        return command.checks["train-tokenizer"].kept, None
    if command.runs("tokenize"):
        from gpt2zh.training.model import adopted_base

        tokenizer = TokenizerManifest.read(request.run_dir.tokenizer)
        if tokenizer is not None:
            adopted_base(request.config.model.init_from, tokenizer, request.run_dir.tokenizer)
        return tokenizer, None
    inputs = read_inputs(request)
    return inputs.tokenizer, inputs


def check_pretrain(command: Command) -> PretrainCheck:
    """What stage 3 would refuse for a reason known before the command's first stage, and its plan."""
    from gpt2zh.training.checkpoints import check_resume_folder

    request, config, run = command.request, command.request.config, command.request.run_dir
    _check_corpus_estimate(command)
    if config.checkpoint.resume not in ("auto", "never", "hub"):
        check_resume_folder(config.checkpoint.resume)
    tokenizer, inputs = _upstream(command)
    check_schedule(config)
    check_trackers(config.training.report_to)
    sizes = plan_sizes(config, tokenizer.vocab_size if tokenizer else None, inputs.block_size if inputs else None)
    plan = make_plan(request, sizes)
    if (warning := learning_rate_warning(sizes.shape.parameters, config.optimization.learning_rate)) is not None:
        log.warning("%s", warning)  # PITFALLS.md PT13
    model = ModelManifest.read(run.model)
    if model is not None and not command.replaces:
        refuse_replacing(run.model, model, training_inputs(config, None, []), settings_of_the_weights)
    _check_resumed_checkpoint(config, run, command.replaces and any(command.runs(stage) for stage in UPSTREAM))
    return PretrainCheck(plan, sizes, inputs)


def inputs_and_plan(request: StageRequest) -> tuple[PretrainInputs, TrainingPlan]:
    """What stage 3 trains on and with: its check's, made by preflight (or now, for a stage called without one);
    the inputs read again where an earlier stage of the command built them, the plan made again only where they
    have another vocabulary or block size than it was made for (a base model's tokenizer adopted by stage 1)."""
    check = request.checks.get(STAGE) or check_pretrain(Command(request, {STAGE: request.force}))
    inputs = check.inputs or read_inputs(request)
    sizes = plan_sizes(request.config, inputs.tokenizer.vocab_size, inputs.block_size)
    return inputs, check.plan if sizes == check.sizes else make_plan(request, sizes)
