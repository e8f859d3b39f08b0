"""What can be known before the first stage runs, checked before anything long starts: the corpus
paths, finished outputs a command would replace, a held-out split too small to evaluate, and a
schedule that does not fit max_steps. Each problem is one line that says what to change.
"""

import logging
import math

from gpt2zh.config.schema import Config, DataConfig
from gpt2zh.corpus.sources import Source, sources_for
from gpt2zh.errors import UserError
from gpt2zh.fingerprints import dataset_inputs, recorded_base_model, tokenizer_inputs, training_inputs, weights_inputs
from gpt2zh.input_changes import setting_changes
from gpt2zh.report import human_bytes
from gpt2zh.rundir import fingerprint, read_manifest, refuse_replacing
from gpt2zh.stages import StageInfo, StageRequest
from gpt2zh.training.presets import HARDWARE_FIELDS
from gpt2zh.training.trackers import check_trackers

log = logging.getLogger("gpt2zh")
# An upper bound on tokens per corpus byte: UTF-8 Chinese has 3 bytes a character and a tokenizer rarely
# gives fewer than 1.3 characters a token (the demo corpus measures 6.7 bytes a token). Erring high means
# a corpus is refused only when its split surely comes out empty.
BYTES_PER_TOKEN = 4.0
# A base model's tokenizer (`--model-init-from`) may cut Chinese finer: GPT-2's byte-level BPE gives about two
# bytes a token, and no tokenizer gives fewer than one.
ADOPTED_BYTES_PER_TOKEN = 1.0
SMALL_VALIDATION_BLOCKS = 10  # below this the validation loss moves by noise as much as by learning


def _without_hardware(inputs: dict) -> dict:
    """Stage 3's inputs without the fields a GPU preset may set: stage 3 fingerprints the precision its plan
    resolved (auto is fp32 on a CPU), which is known only once the plan is made."""
    config = dict(inputs.get("config", {}))
    config["training"] = {k: v for k, v in config.get("training", {}).items() if k not in HARDWARE_FIELDS}
    return {**inputs, "config": config}


def _estimated_tokens(sources: list[Source], bytes_per_token: float) -> float | None:
    """None where file sizes say little about the text (compressed files, parquet)."""
    if any(source.compression or source.format == "parquet" for source in sources):
        return None
    return sum(source.size for source in sources) / bytes_per_token


def check_split_sizes(sources: list[Source], data: DataConfig, adopted_tokenizer: bool = False) -> None:
    """Refuse a corpus whose held-out (or training) split cannot fill one block; warn when it fills only a few.
    adopted_tokenizer: stage 1 adopts a base model's tokenizer, which may give more tokens a byte than ours."""
    tokens = _estimated_tokens(sources, ADOPTED_BYTES_PER_TOKEN if adopted_tokenizer else BYTES_PER_TOKEN)
    if tokens is None:
        return
    size = human_bytes(sum(source.size for source in sources))
    if tokens * (1 - data.validation_fraction) < data.block_size:
        raise UserError(f"the corpus ({size}, at most about {tokens:,.0f} tokens) cannot fill one training block of "
                        f"{data.block_size} tokens", "add text or use a smaller --data-block-size")
    if data.validation_fraction == 0:
        return
    held_out = tokens * data.validation_fraction
    blocks = held_out / data.block_size
    needed = min(0.5, math.ceil(100 * SMALL_VALIDATION_BLOCKS * data.block_size / tokens) / 100)
    raise_to = (f"use --data-validation-fraction {needed:g} (about {SMALL_VALIDATION_BLOCKS} blocks)"
                if needed * tokens / data.block_size >= 1 else "add text")
    what = (f"the corpus ({size}, at most about {tokens:,.0f} tokens) gives about {held_out:,.0f} held-out tokens at "
            f"--data-validation-fraction {data.validation_fraction:g}")
    if blocks < 1:
        raise UserError(f"{what}, less than one block of {data.block_size}: stage 2 would stop with an empty "
                        "validation split", f"{raise_to}, or a smaller --data-block-size")
    if blocks < SMALL_VALIDATION_BLOCKS:
        log.warning("%s, about %d block(s) of %d: the validation loss will be noisy; %s or a smaller "
                    "--data-block-size", what, int(blocks), data.block_size, raise_to)


def check_training_size(sources: list[Source], config: Config, adopted_tokenizer: bool = False) -> None:
    """Before stage 1: a corpus too small for one optimizer step of this configuration is refused, and one that
    max_steps repeats more than a few times is warned about (PITFALLS.md NU7, NU8). Estimated as check_split_sizes
    estimates: an upper bound on the tokens, so a refusal is sure and the epochs are at least those said."""
    from gpt2zh.training.data_size import many_epochs_warning, refuse_less_than_one_step

    tokens = _estimated_tokens(sources, ADOPTED_BYTES_PER_TOKEN if adopted_tokenizer else BYTES_PER_TOKEN)
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


def check_plan(request: StageRequest, vocab_size: int | None) -> None:
    """Stage 3's plan on this machine, made now: a model that cannot fit the GPU stops here, not after hours
    of stages 1-2 (PITFALLS.md PT12), and a learning rate far above the size's reference is said now (PT13)."""
    from gpt2zh.training.plan import Probe, model_shape, plan_training
    from gpt2zh.training.plan_report import learning_rate_warning

    config, facts = request.config, request.resolved.facts
    probe = Probe(True, "probed by stage 3") if config.optimization.optimizer == "adamw_8bit" else None
    shape = model_shape(config, vocab_size)
    plan_training(config, facts, facts.world_size, probe, request.resolved.origin, shape)
    if (warning := learning_rate_warning(shape.parameters, config.optimization.learning_rate)) is not None:
        log.warning("%s", warning)


def _settings_of_the_weights(inputs: dict) -> dict:
    """Stage 3's inputs narrowed to the settings its weights depend on: no preset fields, no plan for future
    steps (a higher max_steps trains on, PITFALLS.md RA2)."""
    return weights_inputs(_without_hardware(inputs))


def _check_resumed_checkpoint(config: Config, run, replaced_upstream: bool) -> None:
    """A max_steps the last checkpoint is past, or (a new machine's run, no checkpoint here) a Hub checkpoint of
    other settings: refused before stage 1 (PITFALLS.md RA2, RA4). replaced_upstream: --force with stage 1 or 2
    in the command, after which the checkpoints may be another run's that stage 3 moves aside (NU3)."""
    from gpt2zh.hub.checkpoints import refuse_other_settings, wants_hub_checkpoint
    from gpt2zh.training.checkpoints import find_last_valid_checkpoint, read_marker
    from gpt2zh.training.continuation import refuse_fewer_steps

    if config.checkpoint.resume not in ("auto", "hub"):
        return
    if (last := find_last_valid_checkpoint(run.stage("checkpoints"))[0]) is not None:
        recorded = (read_marker(last) or {}).get("inputs", {})
        if replaced_upstream or setting_changes(_settings_of_the_weights(recorded), _settings_of_the_weights(
                training_inputs(config, {"fingerprint": ""}, []))):
            return
        refuse_fewer_steps(last, config.training.max_steps)
    elif wants_hub_checkpoint(config):
        refuse_other_settings(config, training_inputs(config, {"fingerprint": ""}, []), _settings_of_the_weights)


def check_token_present(config: Config, commands: set[str], dry_run: bool) -> None:
    """Without a network request: whether the token is accepted is checked by the stage, before any upload."""
    pushes = ("push" in commands and not dry_run) or ("pretrain" in commands and config.hub.push_checkpoints)
    if pushes and config.hub.repo_id:
        from gpt2zh.hub.access import require_token

        require_token(config.hub.repo_id, config.hub.provider)


def preflight(request: StageRequest, stages: list[tuple[StageInfo, bool]]) -> None:
    """Raise before any stage runs if one of them would refuse or fail for a reason known now."""
    config, run = request.config, request.run_dir
    forced = {info.command: force for info, force in stages}
    check_token_present(config, set(forced), request.dry_run)
    sources = sources_for(config.data.files)[0] if {"train-tokenizer", "tokenize"} & set(forced) else []
    tokenizer = read_manifest(run.stage("tokenizer"))
    tokenizer_parts = tokenizer_inputs(config, sources, recorded_base_model(config, tokenizer)) if sources else None
    replacing = request.replace  # --from-stage reruns a stage, only --force replaces what other inputs built
    if "train-tokenizer" in forced and not replacing and tokenizer is not None:
        refuse_replacing(run.stage("tokenizer"), tokenizer, tokenizer_parts)
    if "tokenize" in forced:
        from gpt2zh.dataset.stage import checked_tokenizer, output_folder

        if "train-tokenizer" not in forced:
            checked_tokenizer(run.stage("tokenizer"), config, sources)
        folder = output_folder(run.stage("dataset"), config.data)
        dataset = read_manifest(folder)
        upstream = tokenizer if tokenizer is not None and tokenizer["fingerprint"] == fingerprint(tokenizer_parts) \
            else {"fingerprint": "(rebuilt by this command)"}
        dataset_parts = dataset_inputs(config, sources, upstream)
        if dataset is not None and not replacing:
            refuse_replacing(folder, dataset, dataset_parts)
        if forced["tokenize"] or dataset is None or dataset["fingerprint"] != fingerprint(dataset_parts):
            adopted = bool(config.model.init_from)
            _refuse_together(*([lambda: check_training_size(sources, config, adopted_tokenizer=adopted)]
                               if "pretrain" in forced else []),
                             lambda: check_split_sizes(sources, config.data, adopted_tokenizer=adopted))
    if "pretrain" in forced:
        from gpt2zh.training.checkpoints import check_resume_folder
        from gpt2zh.training.model import adopted_base

        if config.checkpoint.resume not in ("auto", "never", "hub"):
            check_resume_folder(config.checkpoint.resume)
        if tokenizer is not None and "train-tokenizer" not in forced:
            adopted_base(config.model.init_from, tokenizer, run.stage("tokenizer"))
        check_schedule(config)
        check_trackers(config.training.report_to)
        check_plan(request, tokenizer["vocab_size"] if tokenizer and "train-tokenizer" not in forced else None)
        model = read_manifest(run.stage("model"))
        if model is not None and not replacing:
            refuse_replacing(run.stage("model"), model, training_inputs(config, {"fingerprint": ""}, []),
                             _settings_of_the_weights)
        _check_resumed_checkpoint(config, run, replacing and bool({"train-tokenizer", "tokenize"} & set(forced)))
