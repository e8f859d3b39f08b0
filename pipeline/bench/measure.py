"""One `gpt2zh bench` variant, in a process of its own: stage 3's Trainer, model and plan on synthetic tokens.

The plan is the one stage 3 would make for this machine (or the preset); the model is built as stage 3
builds it, on random token ids of the configured vocabulary (no tokenizer or corpus is needed); the Trainer
is stage 3's (PretrainTrainer: the same sampler, guards and arguments) with evaluation, checkpoints and
logging off. Tokens/s are taken over the steps after the warm-up (allocation, compiling, loader start-up);
the peak memory is CUDA's allocator peak on a GPU and the process's peak resident memory on CPU, measured
beside the memory model's estimate.
"""

import json
import resource
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from gpt2zh.console import progress
from gpt2zh.errors import UserError
from gpt2zh.hardware.peaks import peak_tflops
from gpt2zh.training.mfu import flops_per_token, mfu
from gpt2zh.training.plan import plan_sizes, plan_training
from gpt2zh.training.plan_report import plan_record

GIB = 2**30


class SyntheticBlocks:
    """Random token ids of the configured vocabulary, one fixed block per index (the same in every variant)."""

    def __init__(self, count: int, block_size: int, vocab_size: int, seed: int):
        import numpy as np

        self.blocks = np.random.default_rng(seed).integers(0, vocab_size, (count, block_size), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.blocks[index]}


def _resident_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux: KiB


def _recorder(trainer, cuda: bool):
    """A callback keeping the time at the end of each step and the step's loss (the trainer's own figure)."""
    import torch
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []
            self.losses: list[float] = []
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = progress(state.max_steps, "steps", "bench")  # compiling can make the first steps long
            self.ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()  # the step's kernels finished, not only queued
            self.ends.append(time.perf_counter())
            if (loss := trainer.step_loss()) is not None:
                self.losses.append(loss)
            self.bar.update(1)

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return StepRecorder()


def _trainer(request, plan, steps: int, output_dir: Path):
    """stage 3's Trainer on synthetic blocks, without evaluation, checkpoints or logs."""
    from transformers import TrainingArguments, set_seed

    from gpt2zh.training.arguments import argument_values
    from gpt2zh.training.chunked_loss import use_chunked_loss
    from gpt2zh.training.continuation import planned_schedule
    from gpt2zh.training.data import BlockCollator
    from gpt2zh.training.model import build_model, gpt2_config
    from gpt2zh.training.trainer import PretrainTrainer

    config = request.config
    config.training.max_steps = steps
    set_seed(config.training.seed)
    vocab = config.tokenizer.vocab_size
    tokenizer = SimpleNamespace(vocab_size=vocab, special_token_ids={"pad": 0, "bos": 1, "eos": 2},
                                base_architecture=None)
    model = build_model(gpt2_config(config.model, tokenizer, plan.attention))
    if plan.chunked_loss:
        use_chunked_loss(model, plan.device)
    blocks = SyntheticBlocks(plan.global_batch_size * steps, config.data.block_size, vocab, config.training.seed)
    values = argument_values(config, plan, output_dir)
    values.update(eval_strategy="no", eval_on_start=False, save_strategy="no", logging_strategy="no",
                  logging_first_step=False, report_to="none", disable_tqdm=True)
    trainer = PretrainTrainer(model=model, args=TrainingArguments(**values), train_dataset=blocks,
                              data_collator=BlockCollator(), stream_seed=config.training.seed,
                              samples_per_step=plan.global_batch_size, resume_step=0,
                              max_nonfinite=config.training.max_nonfinite_steps, schedule=planned_schedule(config))
    return trainer, sum(p.numel() for p in model.parameters())


def measure(request, probe, steps: int, warmup: int) -> dict:
    """Train warmup + steps optimizer steps and report the figures of the last `steps`."""
    import torch

    config, facts = request.config, request.resolved.facts
    sizes = plan_sizes(config)
    plan = plan_training(config, facts, facts.world_size, probe, request.resolved.origin, sizes)
    record = plan_record(request.resolved, plan, sizes)
    cuda = plan.device == "cuda"
    before = _resident_gib()
    with tempfile.TemporaryDirectory(prefix="gpt2zh-bench-") as scratch:
        trainer, parameters = _trainer(request, plan, warmup + steps, Path(scratch))
        clock = _recorder(trainer, cuda)
        trainer.add_callback(clock)
        trainer.train()
    losses = clock.losses
    start = clock.ends[warmup]  # the end of the last warm-up step (or the start of training)
    seconds = clock.ends[-1] - start
    tokens = steps * plan.global_batch_size * config.data.block_size
    rate = tokens / seconds
    peak, peak_note = peak_tflops(facts.gpus[0].name if facts.gpus else None, plan.precision, plan.tf32)
    per_token = flops_per_token(parameters, config.model.n_layer, config.data.block_size, config.model.n_embd)
    utilisation = mfu(rate, per_token, peak, plan.world_size if cuda else 0)
    estimate = plan.memory.total - plan.memory.reserve
    measured = torch.cuda.max_memory_allocated() / GIB if cuda else _resident_gib()
    return {
        "steps": steps, "warmup": warmup, "tokens_per_step": plan.global_batch_size * config.data.block_size,
        "tokens_per_second": round(rate, 1), "step_seconds": round(seconds / steps, 4),
        "mfu": None if utilisation is None else round(utilisation, 4), "mfu_peak": peak_note,
        "memory": {"measured_gib": round(measured, 3),
                   "measured_by": "torch.cuda.max_memory_allocated" if cuda else "peak resident memory (ru_maxrss)",
                   "before_model_gib": None if cuda else round(before, 3), "estimate_gib": round(estimate, 4)},
        "final_loss": round(losses[-1], 4) if losses else None, "parameters": parameters,
        "plan": {key: record[key] for key in ("one_line", "per_device_batch_size", "gradient_accumulation_steps",
                                              "processes", "precision", "tf32", "attention", "optimizer",
                                              "torch_compile", "compile_mode", "activation_checkpointing",
                                              "chunked_loss", "notes")},
    }


def failure_line(error: BaseException) -> str:
    """A variant that failed, as one line for its row: out of memory, a missing kernel, a refused setting."""
    if isinstance(error, UserError):
        return error.one_line()
    if isinstance(error, KeyboardInterrupt):
        return "stopped by Ctrl-C"
    name = type(error).__name__
    if "OutOfMemory" in name or "out of memory" in str(error):
        return f"out of memory: {str(error).splitlines()[0][:200]}"
    if isinstance(error, ImportError):
        return f"missing kernel or package: {error}"
    return f"{name}: {(str(error).splitlines() or [''])[0][:200]}"


def run_variant(request, probe, steps: int, warmup: int, result: Path) -> int:
    """The child's whole job: measure, write the result (or the failure's line) to `result` for the parent."""
    try:
        figures, code = measure(request, probe, steps, warmup), 0
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - every failure is one line in its row
        figures, code = {"error": failure_line(error)}, 130 if isinstance(error, KeyboardInterrupt) else 1
    result.write_text(json.dumps(figures, ensure_ascii=False), encoding="utf-8")
    return code
