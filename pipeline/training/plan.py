"""How to train on this machine: a pure function of the config and the collected hardware facts.

Every adjustment carries a one-line reason that the stage logs, and every refusal is a UserError
with the fix. Tests feed fabricated A100 / RTX 4090 / RTX 5090 / T4 / H100 / CPU facts.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

from gpt2zh.config.schema import Config
from gpt2zh.errors import UserError
from gpt2zh.hardware.decisions import (
    bf16_native,
    compile_available,
    flash_attention_eligible,
    tf32_eligible,
    version_at_least,
)
from gpt2zh.hardware.facts import HardwareFacts
from gpt2zh.models.architecture import FUSED_GELU
from gpt2zh.resolution import COMMAND_LINE
from gpt2zh.training.batch_fit import BatchAsk, fit_batch
from gpt2zh.training.memory_model import MemoryEstimate, ModelShape, Setup
from gpt2zh.training.mfu import reference_tokens_per_second

FUSED_ADAMW_ON_CPU = "2.4"  # torch added the fused AdamW kernel for CPU in 2.4
# torch.compile's price and gain for a GPT-2 on one GPU, rough figures: compiling takes about a minute
# (nanoGPT), CUDA graphs add their capture, max-autotune benchmarks Triton kernels for each matmul shape for
# minutes. nanoGPT's step fell from 250 to 135 ms with compile (46 %); a third is assumed, a little more
# for the modes that add CUDA graphs and tuned kernels. Each mode includes the one before it.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
COMPILE_SECONDS = {"default": 60.0, "reduce-overhead": 90.0, "max-autotune": 300.0}
COMPILE_SAVES = {"default": 0.30, "reduce-overhead": 0.33, "max-autotune": 0.36}


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str


@dataclass
class TrainingPlan:
    device: str
    world_size: int
    per_device_batch_size: int
    gradient_accumulation_steps: int
    precision: str               # bf16 | fp16 | fp32
    tf32: bool
    attention: str               # sdpa | flash_attention_2 | eager
    optimizer: str               # a TrainingArguments `optim` name
    torch_compile: bool
    compile_mode: str | None
    activation_checkpointing: bool
    chunked_loss: bool
    dataloader_workers: int
    persistent_workers: bool
    pin_memory: bool
    notes: list[str] = field(default_factory=list)
    compile_reason: str = ""                 # what compiling saves over the run against what it costs
    memory: MemoryEstimate | None = None     # the memory model's estimate at this per-device batch
    gpu_memory_gib: float | None = None
    batch_reason: str = ""                   # why this per-device batch, for `gpt2zh plan`
    optimizer_reason: str = ""               # the 8-bit probe's outcome, when it ran

    @property
    def global_batch_size(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps * self.world_size


def check_launch(facts: HardwareFacts, local_world_size: int) -> None:
    """(F2, G2) Processes must fit the GPUs, and several GPUs need a launcher."""
    gpus = len(facts.gpus)
    if gpus and local_world_size > gpus:
        raise UserError(f"world_size is {local_world_size} on this node, but only {gpus} GPU(s) are available",
                        f"launch with --nproc_per_node {gpus} (or fewer)")
    if gpus > 1 and facts.world_size == 1:
        raise UserError(f"{gpus} GPUs found but no launcher: the Trainer would fall back to DataParallel, "
                        "which is slow",
                        f"use `torchrun --nproc_per_node {gpus} -m gpt2zh pretrain ...`, or CUDA_VISIBLE_DEVICES=0 "
                        "for one GPU")


def choose_precision(requested: str, facts: HardwareFacts) -> tuple[str, str | None]:
    if requested == "auto":
        if bf16_native(facts):
            return "bf16", None
        if facts.gpus:
            return "fp16", f"{facts.gpus[0].name} has no native bf16: fp16 with loss scaling"
        return "fp32", None
    if requested == "bf16" and facts.gpus and not bf16_native(facts):
        raise UserError(f"--training-precision bf16: {facts.gpus[0].name} (SM {facts.gpus[0].capability[0]}."
                        f"{facts.gpus[0].capability[1]}) has no native bf16 and would emulate it slowly",
                        "use --training-precision fp16 (loss scaling) or auto")
    if requested == "fp16" and not facts.gpus:
        raise UserError("--training-precision fp16 needs a CUDA GPU", "use --training-precision fp32 (or auto) on CPU")
    return requested, None


def choose_attention(requested: str, facts: HardwareFacts, precision: str) -> tuple[str, str | None]:
    """(G11) FlashAttention-2 only with the package, SM >= 8.0 and a half-precision dtype."""
    eligible, why = flash_attention_eligible(facts)
    half = precision in ("bf16", "fp16")
    if requested == "flash_attention_2":
        if not eligible:
            raise UserError(f"--model-attention flash_attention_2 cannot run here: {why.split(': SDPA')[0]}",
                            "use --model-attention auto (SDPA)")
        if not half:
            raise UserError(f"--model-attention flash_attention_2 needs fp16 or bf16, the plan uses {precision}",
                            "use --training-precision bf16/fp16 or --model-attention auto")
        return "flash_attention_2", None
    if requested == "auto":
        if eligible and half:
            return "flash_attention_2", None
        return "sdpa", (why if facts.gpus and not eligible else None)
    return requested, None


def choose_optimizer(requested: str, facts: HardwareFacts, probe: Probe | None) -> tuple[str, str | None]:
    """(G4) 8-bit Adam only when a real step worked; otherwise fused AdamW, else plain AdamW."""
    fused = bool(facts.gpus) or version_at_least(facts.torch_version, FUSED_ADAMW_ON_CPU)
    adamw = "adamw_torch_fused" if fused else "adamw_torch"
    if requested == "adamw_8bit":
        if probe is not None and probe.ok:
            return "adamw_bnb_8bit", None
        reason = probe.detail if probe is not None else "not probed"
        return adamw, f"8-bit Adam unavailable ({reason}); using {adamw}"
    return adamw, None


class CompileChoice(NamedTuple):
    on: bool
    mode: str | None
    activation_checkpointing: bool
    notes: list[str]
    reason: str = ""  # what compiling saves over the run against its cost, when there is an estimate


def _about(seconds: float) -> str:
    """A rough estimate in words."""
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"~{seconds:.0f} s"
    return f"~{seconds / 60:.0f} min" if seconds < 5400 else f"~{seconds / 3600:.1f} h"


def _payback(mode: str, run_seconds: float, verb: str = "saves") -> str:
    return f"{verb} {_about(COMPILE_SAVES[mode] * run_seconds)} for {_about(COMPILE_SECONDS[mode])} of compiling"


def compile_mode_that_pays(asked: str, steps: int, step_seconds: float | None, typed: bool) \
        -> tuple[str | None, str, str | None]:
    """(NU15) (mode, reason, note): of the asked mode and the cheaper ones it includes, the one that saves the
    most time over the run net of compiling, or None when none saves any. step_seconds: the reference speed's
    (None: no estimate, the asked mode stays); typed: the command line asked for it, so it stays, with a note."""
    if step_seconds is None:
        return asked, "", None
    run_seconds = step_seconds * steps
    run = f"a {steps:,}-step run, {_about(run_seconds)} at the reference speed,"
    candidates = COMPILE_MODES[:COMPILE_MODES.index(asked) + 1]  # training.compile_mode is one of them
    net = {mode: COMPILE_SAVES[mode] * run_seconds - COMPILE_SECONDS[mode] for mode in candidates}
    best = max(net, key=net.get)
    if typed or (best == asked and net[asked] > 0):
        note = None if net[asked] > 0 else (f"torch.compile mode {asked} kept as the command line asks, though {run} "
                                            f"{_payback(asked, run_seconds)} (PITFALLS.md NU15)")
        return asked, f"{run} {_payback(asked, run_seconds)}", note
    if net[best] <= 0:
        return None, "", (f"torch.compile off: {run} {_payback(asked, run_seconds, 'would save')} ({asked}), and "
                          "no mode pays back (PITFALLS.md NU15)")
    return best, f"{run} {_payback(best, run_seconds)}", (
        f"torch.compile mode {best} instead of {asked}: {run} {_payback(asked, run_seconds, 'would save')} with "
        f"{asked}, {_payback(best, run_seconds, 'and')} with {best} (PITFALLS.md NU15)")


def choose_compile(config: Config, facts: HardwareFacts, step_seconds: float | None = None,
                   typed: bool = False) -> CompileChoice:
    """(compile, mode, activation checkpointing, notes, reason). (G1) Never both, compile wins. (NU15) Only
    where it pays back over training.max_steps at step_seconds a step, unless typed on the command line."""
    training = config.training
    compile_on, checkpointing = training.torch_compile, training.activation_checkpointing
    mode, reason, notes = training.compile_mode, "", []
    if compile_on:
        available, why = compile_available(facts)
        if available:
            mode, reason, note = compile_mode_that_pays(mode, training.max_steps, step_seconds, typed)
            compile_on, notes = mode is not None, [note] if note else []
        else:
            compile_on, notes = False, [f"torch.compile off: {why}"]
    if compile_on and checkpointing:
        checkpointing = False
        notes.append("activation checkpointing off: with torch.compile (and under DDP) it fails with "
                     "'marked as ready twice' (PITFALLS.md G1); compile kept")
    return CompileChoice(compile_on, mode if compile_on else None, checkpointing, notes, reason)


def choose_dataloader(config: Config, facts: HardwareFacts) -> tuple[int, bool, bool]:
    """(G6) min(8, CPU count) workers, persistent when there are any, pinned memory only with CUDA."""
    workers = config.training.dataloader_workers
    if workers < 0:
        workers = min(8, facts.cpu_count)
    return workers, workers > 0, bool(facts.gpus)


def batch_note(per_device: int, accumulation: int, asked: int, origin: str | None, global_batch: int,
               world_size: int) -> str:
    """Why the per-device batch is not the one asked for, naming who asked (Resolved.origin)."""
    per_process = global_batch // world_size
    why = (f"the global batch {global_batch} over {world_size} process(es) leaves {per_process} per process"
           if per_device == per_process else
           f"{asked} does not divide the {per_process} sequences each process takes per step (global batch "
           f"{global_batch} over {world_size} process(es)), and {per_device} is the largest number below it that does")
    return (f"per-device batch {per_device} instead of {asked}{f' (from {origin})' if origin else ''}: {why}, so "
            f"{per_device} x {accumulation} accumulation x {world_size} = {global_batch}")


def model_shape(config: Config, vocab_size: int | None = None, activation: str = FUSED_GELU) -> ModelShape:
    """The model's shape; vocab_size from the trained tokenizer when there is one, else the config's."""
    m = config.model
    return ModelShape(m.n_layer, m.n_head, m.n_embd, m.n_positions, vocab_size or config.tokenizer.vocab_size,
                      m.dropout, activation)


@dataclass(frozen=True)
class PlanSizes:
    """What a plan is made for beyond the config: the model's shape with the tokenizer's vocabulary, and the
    dataset's block length; the config's before stages 1-2 made them."""
    shape: ModelShape
    block_size: int


def plan_sizes(config: Config, vocab_size: int | None = None, block_size: int | None = None) -> PlanSizes:
    return PlanSizes(model_shape(config, vocab_size), block_size or config.data.block_size)


def plan_training(config: Config, facts: HardwareFacts, local_world_size: int, probe: Probe | None,
                  origin=None, sizes: PlanSizes | None = None) -> TrainingPlan:
    """origin(dotted): who set a config value (Resolved.origin), for the notes; sizes: the tokenizer's
    vocabulary and the dataset's blocks once they exist (None: the config's)."""
    batch_origin = origin("training.per_device_batch_size") if origin else None
    check_launch(facts, local_world_size)
    training = config.training
    precision, note = choose_precision(config.training.precision, facts)
    notes = [note] if note else []
    tf32 = config.training.tf32 and tf32_eligible(facts)
    if config.training.tf32 and facts.gpus and not tf32:
        notes.append(f"TF32 off: {facts.gpus[0].name} is older than Ampere (PITFALLS.md G12)")
    attention, note = choose_attention(config.model.attention, facts, precision)
    notes += [note] if note else []
    optimizer, note = choose_optimizer(config.optimization.optimizer, facts, probe)
    notes += [note] if note else []
    sizes = sizes or plan_sizes(config)
    shape, block = sizes.shape, sizes.block_size
    rate = reference_tokens_per_second(facts.gpus[0].name if facts.gpus else None, precision, tf32,
                                       facts.world_size, shape, block)
    typed = origin is not None and COMMAND_LINE in (origin("training.torch_compile"), origin("training.compile_mode"))
    compiled = choose_compile(config, facts, training.global_batch_size * block / rate if rate else None, typed)
    compile_on, mode, checkpointing, compile_notes = compiled[:4]
    setup = Setup(block, precision, attention, optimizer == "adamw_bnb_8bit", checkpointing, facts.world_size,
                  training.chunked_loss)
    ask = BatchAsk(training.global_batch_size, training.per_device_batch_size, batch_origin,
                   training.gpu_memory_fraction)
    fit = fit_batch(shape, setup, ask, facts.gpus[0] if facts.gpus else None)
    if fit.note is None and fit.per_device != training.per_device_batch_size:
        notes.insert(0, batch_note(fit.per_device, fit.accumulation, training.per_device_batch_size, batch_origin,
                                   training.global_batch_size, facts.world_size))
    notes[:0] = [fit.note] if fit.note else []
    if fit.checkpointing_note:
        checkpointing = True
        notes.append(fit.checkpointing_note)
        compile_notes = [n for n in compile_notes if not n.startswith("activation checkpointing off")]
        if compile_on:
            compile_on, mode = False, None
            notes.append("torch.compile off: activation checkpointing is needed to fit and the two together fail "
                         "with 'marked as ready twice' (PITFALLS.md G1); checkpointing wins here")
    workers, persistent, pin = choose_dataloader(config, facts)
    return TrainingPlan(
        device="cuda" if facts.gpus else "cpu", world_size=facts.world_size, per_device_batch_size=fit.per_device,
        gradient_accumulation_steps=fit.accumulation, precision=precision, tf32=tf32, attention=attention,
        optimizer=optimizer, torch_compile=compile_on, compile_mode=mode, activation_checkpointing=checkpointing,
        chunked_loss=training.chunked_loss, dataloader_workers=workers, persistent_workers=persistent, pin_memory=pin,
        notes=notes + compile_notes,
        compile_reason=compiled.reason if compile_on else "",
        memory=fit.estimate, gpu_memory_gib=facts.gpus[0].memory_gib if facts.gpus else None,
        batch_reason=fit.reason, optimizer_reason=probe.detail if probe is not None else "")
