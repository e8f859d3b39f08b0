"""What stage 3 leaves once training ends: the summary (model/training_summary.json), the model folder itself
(weights, generation settings, tokenizer, config and this run's logs), and the closing report."""

import json
import shutil
from pathlib import Path

from gpt2zh.config import dump_config
from gpt2zh.report import StageReport, context_verdict, human_duration
from gpt2zh.stages import StageRequest
from gpt2zh.training.build import Training
from gpt2zh.training.checkpoints import checkpoint_step
from gpt2zh.training.history import HistoryCallback
from gpt2zh.training.trackers import log_contents

FROZEN_LOGS = ("training_history.csv", "loss.png", "samples.md")  # copied into model/ (stage 4 pushes them)


def summary_of(training: Training, trainer, history: HistoryCallback, train_seconds: float) -> dict:
    config, plan, resume = training.request.config, training.plan, training.resume
    facts, preset = training.request.resolved.facts, training.request.resolved.preset
    block_size = training.inputs.block_size
    evals = history.eval_rows()
    first, last = (evals[0], evals[-1]) if evals else ({}, {})
    steps = trainer.state.global_step
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {
        "steps": steps, "max_steps": config.training.max_steps,
        "resumed_from_step": checkpoint_step(resume) if resume else 0,
        "tokens_seen": steps * plan.global_batch_size * block_size, "train_seconds_this_run": round(train_seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()), "block_size": block_size,
        "vocab_size": training.inputs.tokenizer.vocab_size, "model": config.model.__dict__.copy(),
        "initial_eval_loss": first.get("eval_loss"), "final_eval_loss": last.get("eval_loss"),
        "final_perplexity": last.get("perplexity"), "final_bits_per_char": last.get("bits_per_char"),
        "unigram_entropy": round(history.figures.unigram, 4), "skipped_steps": trainer.nonfinite.skipped,
        "preset": preset.name if preset else None,
        "hardware": {"gpus": [g.name for g in facts.gpus], "cpu_count": facts.cpu_count, "world_size": plan.world_size},
        "plan": {key: value for key, value in plan.__dict__.items() if key not in ("notes", "memory", "reasons")},
        "plan_notes": plan.notes, "plan_record": training.record,
        "throughput": _throughput(history),
        "memory": {"estimate_gib": plan.memory.as_dict(), "measured_peak_gib": history.gpu_peak_gib,
                   "measured_by": "torch.cuda.max_memory_allocated" if facts.gpus else None},
        "dataset": [str(folder) for folder in training.inputs.dataset_folders],
        "base_model": trainer.base_model,
        "schedule": trainer.schedule.as_dict(),
    }


def _throughput(history: HistoryCallback) -> dict:
    """The median of the logged tokens/s and MFU of this run, and the card's peak the MFU is of (or why none)."""
    import statistics

    rows = [row for row in history.rows.values() if row.get("tokens_per_second")]
    rates = [row["tokens_per_second"] for row in rows]
    shares = [row["mfu"] for row in rows if row.get("mfu") is not None]
    return {"tokens_per_second": round(statistics.median(rates), 1) if rates else None,
            "mfu": round(statistics.median(shares), 4) if shares else None, "peak": history.figures.peak_note}


def save_final(staging: Path, trainer, request: StageRequest, summary: dict) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    from gpt2zh.training.samples import TEMPERATURE, TOP_K

    config, run = request.config, request.run_dir
    model = trainer.accelerator.unwrap_model(trainer.model)  # no compile wrapper, no `_orig_mod.` keys
    ids = model.config
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=64,
        bos_token_id=ids.bos_token_id, eos_token_id=ids.eos_token_id, pad_token_id=ids.pad_token_id)
    model.save_pretrained(staging)  # safetensors
    tokenizer = AutoTokenizer.from_pretrained(str(run.tokenizer))
    tokenizer.model_max_length = config.model.n_positions
    tokenizer.save_pretrained(staging)
    (staging / "training_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    dump_config(config, staging / "run_config.yaml")  # beside transformers' own config.json
    _freeze_logs(run.logs, staging)


def _freeze_logs(logs_dir: Path, staging: Path) -> None:
    """The history, plot and samples of the run that made these weights, copied beside them: logs/ is
    rewritten in place by the next run (a crashed `--resume never` restart leaves a partial history
    there), and stage 4 must push what describes this model."""
    for name in FROZEN_LOGS:
        if (logs_dir / name).is_file():
            shutil.copyfile(logs_dir / name, staging / name)


def report_rows(report: StageReport, summary: dict, final: Path, logs_dir: Path, report_to: list[str]) -> None:
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
    speed = summary.get("throughput") or {}
    if speed.get("tokens_per_second"):
        share = (f"MFU {100 * speed['mfu']:.1f} % of the {speed['peak']}" if speed["mfu"] is not None
                 else speed["peak"])
        report.row("throughput", f"{speed['tokens_per_second']:,.0f} tokens/s (median of the logged steps); {share}")
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
