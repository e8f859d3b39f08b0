#!/usr/bin/env python3
"""Benchmark stage 3's Trainer path against a minimal hand-written PyTorch loop, in one run, on CPU.

Same model (the demo's GPT-2), same batch, same data, same optimizer (AdamW, clipping at 1.0).
Tokens/s are taken over the steps after --warmup (the first steps pay for allocation and loader
start-up); the Trainer's evaluations are moved out of the measured window. The two paths alternate
for --rounds rounds and medians are compared: on a 2-core machine one window varies by ±4 %.
Goal: ratio >= 0.95.

    python scripts/bench_train.py [--steps 150] [--warmup 20] [--workers N]
"""

import argparse
import contextlib
import csv
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpt2zh.hf_env import prepare_hf_environment


def cli(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "gpt2zh", *args], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"bench: `gpt2zh {' '.join(args)}` failed:\n{result.stderr}")


def hand_written_loop(run_dir: Path, config, steps: int, warmup: int) -> float:
    """The plainest correct loop: shuffled blocks, forward, backward, clip, AdamW step."""
    import numpy as np
    import torch
    from transformers import set_seed

    from gpt2zh.manifests import TokenizerManifest
    from gpt2zh.rundir import RunDir
    from gpt2zh.training.data import load_training_data
    from gpt2zh.training.model import build_model, gpt2_config

    set_seed(config.training.seed)
    model = build_model(gpt2_config(config.model, TokenizerManifest.read(RunDir(run_dir).tokenizer), "sdpa"))
    model.train()
    train, _ = load_training_data(RunDir(run_dir).dataset, 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optimization.learning_rate, betas=(0.9, 0.95),
                                  weight_decay=config.optimization.weight_decay, fused=True)
    batch = config.training.global_batch_size
    order = np.random.default_rng(0).permutation(len(train))
    started = None
    for step in range(steps):
        if step == warmup:
            started = time.perf_counter()
        indices = order[(step * batch) % (len(order) - batch):][:batch]
        input_ids = torch.from_numpy(np.asarray(train[indices]["input_ids"]).astype(np.int64))
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - started
    return (steps - warmup) * batch * train[0]["input_ids"].shape[0] / elapsed


def trainer_path(run_dir: Path, config_path: Path, overrides: dict, steps: int, warmup: int,
                 tokens_per_step: int) -> float:
    from gpt2zh.resolution import resolve_file
    from gpt2zh.rundir import RunDir
    from gpt2zh.stages import StageRequest
    from gpt2zh.training.stage import pretrain

    request = StageRequest(resolve_file(config_path, overrides), RunDir(run_dir), force=True, overrides=overrides)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        pretrain(request)
    with open(RunDir(run_dir).logs / "training_history.csv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["tokens_per_second"] and int(r["step"]) > warmup]
    # each row's rate covers the steps since the previous log; weight by steps for the mean rate
    steps_logged = [int(r["step"]) for r in rows]
    spans = [b - a for a, b in zip([warmup] + steps_logged[:-1], steps_logged, strict=True)]
    seconds = sum(span * tokens_per_step / float(r["tokens_per_second"]) for span, r in zip(spans, rows, strict=True))
    return sum(spans) * tokens_per_step / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--workers", type=int, default=None, help="override training.dataloader_workers")
    args = parser.parse_args()
    prepare_hf_environment()
    from gpt2zh.config import find_config, load_config

    config_path = find_config("demo")
    with tempfile.TemporaryDirectory(prefix="gpt2zh-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        cli("train-tokenizer", "--run-dir", str(run_dir), "--quiet")
        cli("tokenize", "--run-dir", str(run_dir), "--quiet")
        overrides = {"training.max_steps": args.steps, "training.eval_steps": 10 * args.steps,
                     "training.logging_steps": 5, "checkpoint.save_steps": 10 * args.steps,
                     "training.sample_max_new_tokens": 0, "checkpoint.resume": "never"}  # no samples
        if args.workers is not None:
            overrides["training.dataloader_workers"] = args.workers
        config = load_config(config_path, overrides)
        batch, block = config.training.global_batch_size, config.data.block_size
        ours, loop = [], []
        for _ in range(args.rounds):
            ours.append(trainer_path(run_dir, config_path, overrides, args.steps, args.warmup, batch * block))
            loop.append(hand_written_loop(run_dir, config, args.steps, args.warmup))
    print(f"demo model ({config.model.n_layer} layers x {config.model.n_embd}), batch {batch} x {block} tokens, "
          f"{args.steps - args.warmup} measured steps, {args.rounds} alternating rounds")
    for label, rates in (("Trainer path     ", ours), ("hand-written loop", loop)):
        print(f"  {label} {statistics.median(rates):9.0f} tokens/s  (rounds: {', '.join(f'{x:.0f}' for x in rates)})")
    ratio = statistics.median(ours) / statistics.median(loop)
    print(f"  ratio {ratio:.3f}  ({'meets' if ratio >= 0.95 else 'MISSES'} the goal of >= 0.95)")


if __name__ == "__main__":
    main()
