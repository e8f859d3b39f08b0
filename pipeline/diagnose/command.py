"""`gpt2zh diagnose --run-dir DIR`: the debugging checklist (D12) and the NaN checklist (N1), automated.

Reads whatever the run directory has (tokenizer and dataset at least; weights and history when
stage 3 ran) and writes logs/diagnosis.md and logs/diagnosis.png. It never changes a stage's output.
"""

import logging
import time
from pathlib import Path

from gpt2zh.diagnose.findings import FAIL, OK, WARN, Finding, render_markdown, render_terminal, worst
from gpt2zh.errors import UserError
from gpt2zh.manifests import ModelManifest, TokenizerManifest
from gpt2zh.report import StageReport, human_duration
from gpt2zh.rundir import RunDir

log = logging.getLogger("gpt2zh")


def _run_config(run: RunDir, fallback):
    """The config the run was trained with (model/run_config.yaml) when there is one."""
    from gpt2zh.config import load_config

    saved = run.model / "run_config.yaml"
    return (load_config(saved), str(saved)) if saved.is_file() else (fallback, "the command line / --config")


def _trained_weights(run: RunDir) -> tuple[Path | None, str]:
    from gpt2zh.training.checkpoints import find_last_valid_checkpoint

    if ModelManifest.read(run.model) is not None:
        return run.model, f"final weights ({ModelManifest.FOLDER}/)"
    checkpoint, _ = find_last_valid_checkpoint(run.checkpoints)
    if checkpoint is not None:
        return checkpoint, f"weights of {checkpoint.name}"
    return None, "weights at initialisation (no checkpoint yet)"


def _finite_weights(model, source: str) -> Finding:
    bad = [name for name, p in model.named_parameters() if not bool(p.detach().isfinite().all())]
    if bad:
        return Finding("gradients", FAIL, "non-finite values in the weights", f"{source}: NaN/Inf in "
                       f"{', '.join(bad[:4])}", "resume from an earlier checkpoint with a lower learning rate", "D7")
    return Finding("gradients", OK, "weights are finite", source)


def diagnose(run: RunDir, config) -> tuple[list[Finding], Path]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from gpt2zh.dataset.loading import dataset_parts
    from gpt2zh.diagnose import data_checks, history_checks, model_checks
    from gpt2zh.training.history import read_history
    from gpt2zh.training.model import gpt2_config

    hf_logging.disable_progress_bar()  # "Loading weights" bars would bury the findings
    tokenizer_manifest = TokenizerManifest.read(run.tokenizer)
    if tokenizer_manifest is None:
        raise UserError(f"no complete tokenizer in {run.tokenizer}",
                        "diagnose needs at least stages 1 and 2: run `gpt2zh run` (or train-tokenizer, tokenize)")
    block_size = dataset_parts(run.dataset)[0][1].block_size
    config, config_source = _run_config(run, config)
    vocab_size = tokenizer_manifest.vocab_size
    ids = tokenizer_manifest.special_token_ids
    header = [f"Run directory: `{run.root}`. Config: {config_source}. Vocabulary {vocab_size:,}, blocks of "
              f"{block_size} tokens."]

    started = time.monotonic()
    blocks = data_checks.load_sample(run.dataset, block_size)
    pieces = AutoTokenizer.from_pretrained(str(run.tokenizer)).convert_ids_to_tokens(list(range(vocab_size)))
    findings = data_checks.data_findings(blocks, vocab_size, ids, pieces)
    log.info("diagnose: data checked in %s", human_duration(time.monotonic() - started))
    if worst(findings[:2]) == FAIL:  # out-of-vocabulary ids or ragged blocks would crash the model checks
        return findings, _write(run, findings, header, None)

    model_config = gpt2_config(config.model, tokenizer_manifest, "sdpa")
    model_config.n_positions = max(model_config.n_positions, block_size)
    seed = config.training.seed
    initial = model_checks.fresh_model(model_config, seed)
    alignment = model_checks.check_alignment(initial, blocks.train)
    findings.append(alignment)
    findings.append(model_checks.check_initialisation(initial, blocks.validation, vocab_size))

    weights, source = _trained_weights(run)
    trained = initial
    if weights is not None:
        trained = AutoModelForCausalLM.from_pretrained(str(weights), attn_implementation="sdpa", dtype="float32")
        trained.loss_type = "ForCausalLM"  # as in training (pipeline/training/model.py:build_model)
        findings.append(_finite_weights(trained, source))
    findings.append(model_checks.check_gradients(trained, blocks.train, source))
    started = time.monotonic()
    findings.append(model_checks.check_overfit(model_config, seed, blocks.train, config.optimization.learning_rate,
                                               config.optimization.max_grad_norm, alignment.status == OK))
    log.info("diagnose: one-batch overfit check took %s", human_duration(time.monotonic() - started))

    rows = read_history(run.logs / "training_history.csv")
    series = None
    if rows:
        series = history_checks.load_series(rows)
        findings += history_checks.history_findings(series, config.optimization.max_grad_norm,
                                                    config.optimization.learning_rate,
                                                    config.training.max_nonfinite_steps)
    else:
        findings.append(Finding("history", WARN, "no training history", f"{run.logs / 'training_history.csv'} "
                                "is missing", "run `gpt2zh pretrain` to get the history checks", "D9"))
    return findings, _write(run, findings, header, series)


def _write(run: RunDir, findings: list[Finding], header: list[str], series) -> Path:
    from gpt2zh.diagnose.history_checks import plot_diagnosis

    run.logs.mkdir(parents=True, exist_ok=True)
    if series is not None:
        plot_diagnosis(series, findings, run.logs / "diagnosis.png")
        header = [*header, "", "![training history with the findings marked](diagnosis.png)"]
    report = run.logs / "diagnosis.md"
    temporary = report.with_suffix(".md.tmp")
    temporary.write_text(render_markdown(findings, header), encoding="utf-8")
    temporary.replace(report)
    return report


def run_diagnose(run: RunDir, config) -> int:
    """Exit status 1 when a check failed, so scripts can act on it; the report is written either way."""
    report = StageReport("diagnose")
    findings, path = diagnose(run, config)
    print("\n".join(render_terminal(findings)), flush=True)
    counts = {status: sum(f.status == status for f in findings) for status in (FAIL, WARN, OK)}
    report.row("verdict", f"{counts[FAIL]} problem(s), {counts[WARN]} warning(s), {counts[OK]} passed")
    report.row("report", f"{path}" + (f" and {path.with_suffix('.png').name}" if path.with_suffix(".png").is_file()
                                       else ""))
    report.print()
    return 1 if counts[FAIL] else 0

