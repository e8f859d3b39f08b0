"""The training plan as a record and as text: `gpt2zh plan` prints it, stage 3 logs the same lines before
training and keeps the record in its summary.

Throughput is a guide, not a promise: REFERENCE_MFU of the GPU's dense bf16/fp16 peak (the low end of
the 30-37 % nanoGPT reports for GPT-2 small on an A100 with torch.compile); stage 3's history measures
the real figure. Compute-optimal tokens follow Hoffmann et al. 2022 ("Chinchilla", ~20 tokens a
parameter); reference learning rates are GPT-3's (Brown et al. 2020, Table 2.1).
"""

import math

from gpt2zh.config.schema import Config
from gpt2zh.hardware.decisions import flash_attention_eligible
from gpt2zh.hardware.facts import HardwareFacts
from gpt2zh.hardware.peaks import peak_tflops
from gpt2zh.report import human_bytes
from gpt2zh.resolution import Resolved
from gpt2zh.training.data_size import many_epochs_warning
from gpt2zh.training.mfu import REFERENCE_MFU, reference_tokens_per_second
from gpt2zh.training.plan import FUSED_ADAMW_ON_CPU, PlanSizes, TrainingPlan

TOKENS_PER_PARAMETER = 20
# (parameters, peak learning rate) of GPT-3's model sizes; between two sizes the rate is interpolated on a log scale
REFERENCE_LEARNING_RATES = ((125e6, 6.0e-4), (350e6, 3.0e-4), (760e6, 2.5e-4), (1.3e9, 2.0e-4), (2.7e9, 1.6e-4))
LEARNING_RATE_MARGIN = 1.5  # a rate more than this many times the reference risks loss spikes (PITFALLS.md PT13)
# Corpus bytes per token, for a guess before stage 2 counts them: the upper bound on tokens that the check
# before stage 1 uses (pipeline/dataset/check.py), and what the demo corpus measures with its 4,000 pieces.
BYTES_PER_TOKEN_RANGE = (4.0, 6.7)
# A base model's tokenizer: GPT-2's byte-level BPE (~1.7 bytes a token on Chinese) to a character vocabulary (~3)
ADOPTED_BYTES_PER_TOKEN_RANGE = (1.5, 3.0)


def reference_learning_rate(parameters: int) -> float | None:
    """GPT-3's rate for this size; None below its smallest model (small models tolerate higher rates)."""
    table = REFERENCE_LEARNING_RATES
    if parameters < 0.8 * table[0][0]:
        return None
    if parameters <= table[0][0]:
        return table[0][1]
    for (n0, lr0), (n1, lr1) in zip(table, table[1:], strict=False):
        if parameters <= n1:
            share = math.log(parameters / n0) / math.log(n1 / n0)
            return math.exp(math.log(lr0) + share * math.log(lr1 / lr0))
    return table[-1][1]


def learning_rate_warning(parameters: int, learning_rate: float) -> str | None:
    reference = reference_learning_rate(parameters)
    if reference is None or learning_rate <= LEARNING_RATE_MARGIN * reference:
        return None
    return (f"optimization.learning_rate {learning_rate:g} is {learning_rate / reference:.1f} x the reference "
            f"{reference:.2g} for {parameters / 1e6:.0f} M parameters (GPT-3, Table 2.1): expect loss spikes "
            f"(PITFALLS.md PT13); use e.g. --optimization-learning-rate {reference:.2g}")


def loader_workers(config: Config, facts: HardwareFacts, plan: TrainingPlan, what_if: bool, asked) -> str:
    """DataLoader workers follow the CPUs of the machine that trains, not the card or its preset (PITFALLS.md
    NU15): a plan for a preset's card names this machine's figure as this machine's."""
    if config.training.dataloader_workers >= 0:
        return f"{plan.dataloader_workers} ({asked('training.dataloader_workers')})"
    setting = "a setting of the machine, not of the card or preset"
    if what_if:
        return (f"min(8, CPU count) of the machine that trains: {setting} ({plan.dataloader_workers} on this "
                f"machine's {facts.cpu_count} CPUs)")
    return f"{plan.dataloader_workers} = min(8, this machine's {facts.cpu_count} CPUs): {setting}"


def decision_reasons(config: Config, facts: HardwareFacts, plan: TrainingPlan, origin=None,
                     what_if: bool = False) -> dict[str, str]:
    """Why each choice, in a line; origin(dotted) names who set a config value (Resolved.origin); what_if: the
    facts are a preset's card, not this machine's."""
    def asked(dotted: str) -> str:
        who = origin(dotted) if origin else None
        return f"{dotted} from {who}" if who else f"asked for by {dotted}"

    gpu = facts.gpus[0] if facts.gpus else None
    where = f"{gpu.name} (SM {gpu.capability[0]}.{gpu.capability[1]})" if gpu else "no CUDA GPU"
    precision = (asked("training.precision") if config.training.precision != "auto" else
                 f"auto: {where}" + (" has native bf16" if plan.precision == "bf16" else
                                     " has no native bf16: loss scaling" if plan.precision == "fp16" else ""))
    attention = ("FlashAttention-2: " + flash_attention_eligible(facts)[1] if plan.attention == "flash_attention_2"
                 else asked("model.attention") if config.model.attention == plan.attention else
                 f"PyTorch's fused kernel, no attention matrix kept; not FlashAttention-2: "
                 f"{flash_attention_eligible(facts)[1].split(':')[0]}")
    optimizer = {"adamw_bnb_8bit": f"bitsandbytes 8-bit Adam: {plan.optimizer_reason}",
                 "adamw_torch_fused": "AdamW with the fused kernel", "adamw_torch": "AdamW (no fused kernel: torch "
                 f"< {FUSED_ADAMW_ON_CPU} on CPU)"}[plan.optimizer]
    if config.optimization.optimizer == "adamw_8bit" and plan.optimizer != "adamw_bnb_8bit":
        optimizer += f" (8-bit Adam was asked for but is unavailable: {plan.optimizer_reason})"
    payback = f"; {plan.compile_reason}" if plan.compile_reason else ""
    compiled = f"on, mode {plan.compile_mode} ({asked('training.torch_compile')}{payback})" if plan.torch_compile \
        else "off" + (" (asked for, but see the notes)" if config.training.torch_compile else
                      f" ({asked('training.torch_compile')})")
    checkpointing = ("on" + (f" ({asked('training.activation_checkpointing')})"
                             if config.training.activation_checkpointing else ": needed to fit, see the notes")) \
        if plan.activation_checkpointing else \
        "off" + (" (torch.compile wins, PITFALLS.md G1)" if config.training.activation_checkpointing else
                 ": the batch fits without it")
    return {"batch": plan.batch_reason, "precision": precision, "attention": attention, "optimizer": optimizer,
            "compile": compiled, "activation_checkpointing": checkpointing,
            "loader_workers": loader_workers(config, facts, plan, what_if, asked),
            "tf32": ("on" if plan.tf32 else "off") + ("" if gpu is None or plan.tf32 == config.training.tf32 else
                                                      f": {gpu.name} is older than Ampere")}


def one_line(plan: TrainingPlan, facts: HardwareFacts) -> str:
    device = f"{len(facts.gpus)} x {facts.gpus[0].name}" if facts.gpus else f"CPU ({facts.cpu_count} cores)"
    kernels = [plan.precision, plan.attention, plan.optimizer]
    kernels += ["TF32"] if plan.tf32 else []
    kernels += [f"compile {plan.compile_mode}"] if plan.torch_compile else []
    kernels += ["activation checkpointing"] if plan.activation_checkpointing else []
    kernels += ["chunked loss"] if plan.chunked_loss else []
    return (f"{device}, {plan.world_size} process(es); batch {plan.per_device_batch_size} x "
            f"{plan.gradient_accumulation_steps} accumulation x {plan.world_size} = {plan.global_batch_size}; "
            f"{', '.join(kernels)}")


def plan_record(resolved: Resolved, plan: TrainingPlan, sizes: PlanSizes, train_blocks: int | None = None) -> dict:
    """Everything `gpt2zh plan --json` prints; sizes: what the plan was made for; train_blocks: the dataset's,
    once stage 2 has run. resolved.origin names who set each value the reasons mention; resolved.what_if: planned
    for a preset's card."""
    config, facts, origin, what_if = resolved.config, resolved.facts, resolved.origin, resolved.what_if
    shape, block_size, preset_note = sizes.shape, sizes.block_size, resolved.preset_note
    parameters = shape.parameters
    tokens_per_step = plan.global_batch_size * block_size
    gpu = facts.gpus[0] if facts.gpus else None
    rate = reference_tokens_per_second(gpu.name if gpu else None, plan.precision, plan.tf32, plan.world_size, shape,
                                       block_size)
    peak, peak_note = peak_tflops(gpu.name if gpu else None, plan.precision, plan.tf32)
    max_steps = config.training.max_steps
    optimal_tokens = TOKENS_PER_PARAMETER * parameters
    warnings = [w for w in [learning_rate_warning(parameters, config.optimization.learning_rate),
                            many_epochs_warning(max_steps, plan.global_batch_size, train_blocks, False)
                            if train_blocks else None] if w]
    return {
        "preset": preset_note, "one_line": one_line(plan, facts),
        "device": gpu.name if gpu else "cpu", "gpu_memory_gib": plan.gpu_memory_gib,
        "parameters": parameters, "n_layer": shape.n_layer, "n_embd": shape.n_embd, "n_head": shape.n_head,
        "vocab_size": shape.vocab_size, "block_size": block_size, "tokens_per_step": tokens_per_step,
        "per_device_batch_size": plan.per_device_batch_size,
        "gradient_accumulation_steps": plan.gradient_accumulation_steps, "processes": plan.world_size,
        "global_batch_size": plan.global_batch_size, "precision": plan.precision, "tf32": plan.tf32,
        "attention": plan.attention, "optimizer": plan.optimizer, "torch_compile": plan.torch_compile,
        "compile_mode": plan.compile_mode, "activation_checkpointing": plan.activation_checkpointing,
        "chunked_loss": plan.chunked_loss, "peak_tflops": peak, "peak": peak_note,
        "memory_gib": plan.memory.as_dict() if plan.memory else None,
        "dataloader_workers": plan.dataloader_workers,
        "reasons": decision_reasons(config, facts, plan, origin, what_if), "notes": plan.notes,
        "reference_mfu": REFERENCE_MFU if rate else None,
        "tokens_per_second_estimate": round(rate) if rate else None,
        "max_steps": max_steps, "hours_estimate": round(max_steps * tokens_per_step / rate / 3600, 2) if rate else None,
        "train_tokens": train_blocks * block_size if train_blocks else None,
        "epochs": round(max_steps * plan.global_batch_size / train_blocks, 3) if train_blocks else None,
        "compute_optimal_tokens": optimal_tokens, "compute_optimal_steps": math.ceil(optimal_tokens / tokens_per_step),
        "learning_rate": config.optimization.learning_rate,
        "reference_learning_rate": reference_learning_rate(parameters), "warnings": warnings,
    }


def _throughput(record: dict) -> str:
    if record["tokens_per_second_estimate"] is None:
        return (f"no estimate ({record['peak']}); `gpt2zh bench` measures it here, stage 3 in "
                "logs/training_history.csv")
    return (f"~{record['tokens_per_second_estimate']:,} tokens/s at {100 * record['reference_mfu']:.0f} % MFU of the "
            f"{record['peak'].split(' (')[0]} "
            f"(a reference, not a measurement): {record['max_steps']:,} steps in about "
            f"{_duration(record['hours_estimate'])}")


def _corpus_guess(record: dict) -> str:
    size = record.get("corpus_bytes")
    if not size:
        return "stage 2 has not run: its training tokens give the epochs"
    ratio = ADOPTED_BYTES_PER_TOKEN_RANGE if record.get("adopted_tokenizer") else BYTES_PER_TOKEN_RANGE
    many, few = (size / bytes_per_token for bytes_per_token in ratio)
    steps_tokens = record["max_steps"] * record["tokens_per_step"]
    return (f"stage 2 has not run; {human_bytes(size)} of corpus files are roughly {_tokens(few)} to "
            f"{_tokens(many)} tokens ({ratio[0]:g} to {ratio[1]:g} bytes a token), "
            f"so {record['max_steps']:,} steps are about {steps_tokens / many:,.1f} to {steps_tokens / few:,.1f} "
            "epochs (stage 2 counts the tokens)")


def _duration(hours: float) -> str:
    return f"{hours:,.1f} h" if hours >= 1 else f"{max(1, round(60 * hours))} min"


def _tokens(count: float) -> str:
    return f"{count / 1e9:.2f} B" if count >= 1e9 else f"{count / 1e6:.1f} M" if count >= 1e5 else f"{count:,.0f}"


def plan_lines(record: dict) -> list[str]:
    """The plan as text, a line per topic; notes and warnings last."""
    memory, reasons = record["memory_gib"], record["reasons"]
    of = f" of {record['gpu_memory_gib']:g} GiB" if record["gpu_memory_gib"] else ""
    parts = ", ".join(f"{name.replace('_', ' ')} {value:.1f}" for name, value in memory.items() if name != "total")
    data = (f"{record['train_tokens']:,} training tokens: {record['max_steps']:,} steps = {record['epochs']:g} epochs"
            if record["train_tokens"] else _corpus_guess(record))
    lines = [
        record["preset"],
        record["one_line"],
        f"model: {record['n_layer']} layers x {record['n_embd']}, {record['n_head']} heads, vocabulary "
        f"{record['vocab_size']:,}: {record['parameters'] / 1e6:.1f} M parameters",
        f"tokens per step: {record['global_batch_size']} sequences x {record['block_size']:,} = "
        f"{record['tokens_per_step']:,}",
        f"batch: {record['per_device_batch_size']} x {record['gradient_accumulation_steps']} accumulation x "
        f"{record['processes']} process(es) = {record['global_batch_size']}; {reasons['batch']}",
        f"precision: {record['precision']} ({reasons['precision']}); TF32 {reasons['tf32']}",
        f"attention: {record['attention']} ({reasons['attention']})",
        f"optimizer: {record['optimizer']} ({reasons['optimizer']})",
        f"compile: {reasons['compile']}; activation checkpointing {reasons['activation_checkpointing']}",
        f"loader workers: {reasons['loader_workers']}",
        f"memory (estimate, GiB): {memory['total']:.1f}{of} = {parts}",
        f"throughput: {_throughput(record)}",
        f"data: {data}",
        f"compute-optimal (~{TOKENS_PER_PARAMETER} tokens a parameter): {_tokens(record['compute_optimal_tokens'])} "
        f"tokens = {record['compute_optimal_steps']:,} steps",
    ]
    return lines + [f"note: {note}" for note in record["notes"]] + [f"warning: {w}" for w in record["warnings"]]
