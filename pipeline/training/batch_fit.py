"""The per-device batch (PITFALLS.md PT12): the largest that divides each process's share of the global
batch, stays within what the preset or config asks for, and fits the GPU by the memory model.

A batch that fits only with activation checkpointing turns it on, saying why; one that does not fit
even then is a one-line error that names the estimate, the GPU and what would fit.
"""

import math
from dataclasses import dataclass, replace

from gpt2zh.errors import UserError
from gpt2zh.hardware.facts import GpuFacts
from gpt2zh.training.memory_model import MemoryEstimate, ModelShape, Setup, estimate_memory, largest_fitting_batch


@dataclass(frozen=True)
class BatchFit:
    per_device: int
    accumulation: int
    activation_checkpointing: bool
    estimate: MemoryEstimate
    reason: str                    # why this batch, for the plan
    note: str | None               # set when the batch differs from the one asked for
    checkpointing_note: str | None  # set when the memory model turned checkpointing on


def divisors_up_to(per_process: int, cap: int) -> list[int]:
    return [d for d in range(1, min(cap, per_process) + 1) if per_process % d == 0]


def batch_split(global_batch: int, per_device_max: int, world_size: int) -> tuple[int, int]:
    """(per-device batch, accumulation) with per-device × accumulation × world == global exactly."""
    if global_batch % world_size:
        raise UserError(f"training.global_batch_size {global_batch} is not divisible by {world_size} processes",
                        f"use a multiple of {world_size}")
    per_process = global_batch // world_size
    per_device = max(divisors_up_to(per_process, per_device_max))
    return per_device, per_process // per_device


def _gib(value: float) -> str:
    return f"{value:.1f} GiB"


def _share(fraction: float) -> str:
    return f"{100 * fraction:.0f} %"


@dataclass(frozen=True)
class BatchAsk:
    """What the config asks of the batch."""
    global_batch: int
    per_device: int                # training.per_device_batch_size: the most wanted
    asked_from: str | None         # who set it, for the notes
    memory_fraction: float         # training.gpu_memory_fraction


def fit_batch(shape: ModelShape, setup: Setup, ask: BatchAsk, gpu: GpuFacts | None) -> BatchFit:
    """The batch split over setup.processes processes."""
    global_batch, asked, asked_from, fraction = ask.global_batch, ask.per_device, ask.asked_from, ask.memory_fraction
    world_size = setup.processes
    divisible, _ = batch_split(global_batch, asked, world_size)
    per_process = global_batch // world_size
    candidates = divisors_up_to(per_process, asked)
    who = f" (from {asked_from})" if asked_from else ""
    if gpu is None:
        estimate = replace(estimate_memory(shape, setup, divisible), reserve=0.0)  # no CUDA workspaces
        return BatchFit(divisible, per_process // divisible, setup.activation_checkpointing, estimate,
                        f"no GPU: the batch is not limited by the memory model (an estimated {_gib(estimate.total)} "
                        "of RAM)", None, None)
    limit = gpu.memory_gib * fraction
    chosen = largest_fitting_batch(shape, setup, candidates, limit)
    checkpointing_note = None
    if chosen is None and not setup.activation_checkpointing:
        without = estimate_memory(shape, setup, 1).total
        setup = replace(setup, activation_checkpointing=True)
        chosen = largest_fitting_batch(shape, setup, candidates, limit)
        if chosen is not None:
            checkpointing_note = (f"activation checkpointing on: batch 1 needs an estimated {_gib(without)} without "
                                  f"it, more than {_share(fraction)} of the {gpu.memory_gib:g} GiB of {gpu.name}")
    if chosen is None:
        raise _does_not_fit(shape, setup, gpu, fraction)
    estimate = estimate_memory(shape, setup, chosen)
    fits = (f"the largest that fits: an estimated {_gib(estimate.total)} of {gpu.memory_gib:g} GiB "
            f"(at most {_share(fraction)})")
    note = None
    if chosen < divisible:
        over = estimate_memory(shape, setup, divisible).total
        above = min(d for d in candidates if d > chosen)
        nearest = "" if above == divisible else \
            f" and {above}, the next that divides {per_process}, {_gib(estimate_memory(shape, setup, above).total)}"
        note = (f"per-device batch {chosen} instead of {asked}{who}: {divisible} needs an estimated {_gib(over)}"
                f"{nearest}, more than {_share(fraction)} ({_gib(limit)}) of the {gpu.memory_gib:g} GiB of {gpu.name} "
                f"(PITFALLS.md PT12), so {chosen} x {per_process // chosen} accumulation x {world_size} = "
                f"{global_batch}")
    reason = fits if chosen < divisible else f"{chosen} fits: an estimated {_gib(estimate.total)} of " \
                                             f"{gpu.memory_gib:g} GiB (at most {_share(fraction)})"
    return BatchFit(chosen, per_process // chosen, setup.activation_checkpointing, estimate, reason, note,
                    checkpointing_note)


def _does_not_fit(shape: ModelShape, setup: Setup, gpu: GpuFacts, fraction: float) -> UserError:
    estimate = estimate_memory(shape, setup, 1)
    static = estimate.weights + estimate.gradients + estimate.optimizer_states
    ways, limit = [], gpu.memory_gib * fraction
    if not setup.eight_bit_adam:  # the figure the plan would then show: without checkpointing if that fits
        totals = [estimate_memory(shape, replace(setup, eight_bit_adam=True, activation_checkpointing=ac), 1).total
                  for ac in (False, True)]
        eight_bit = totals[0] if totals[0] <= limit else totals[1]
        if eight_bit <= limit:
            ways.append(f"--optimization-optimizer adamw_8bit ({_gib(eight_bit)})")
    block = setup.block_size // 2
    while block >= 128 and estimate_memory(shape, replace(setup, block_size=block), 1).total > limit:
        block //= 2
    if block >= 128:
        ways.append(f"--data-block-size {block} (stage 2 rebuilds the blocks)")
    ways.append(f"a GPU with at least {math.ceil(estimate.total / fraction)} GiB")
    ways.append("a smaller model")
    return UserError(
        f"{shape.parameters / 1e6:.0f} M parameters at block {setup.block_size} do not fit on {gpu.name} "
        f"({gpu.memory_gib:g} GiB): batch 1 needs an estimated {_gib(estimate.total)} even with activation "
        f"checkpointing ({_gib(static)} of it weights, gradients and optimizer states), more than "
        f"{_share(fraction)} of it (PITFALLS.md PT12)",
        "use " + ", or ".join(ways))
