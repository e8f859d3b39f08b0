#!/usr/bin/env python3
"""The chunked loss against transformers' own, side by side in one run, where the loss dominates memory.

A 2-layer, 768-wide GPT-2 with a 32,000-piece vocabulary at batch 4 x 1,024 on CPU (fp32, AdamW): each
variant is a `gpt2zh bench` child process, so its peak resident memory is its own. Goals: peak memory at
most 0.75 x the plain loss's, tokens/s at least 0.9 x, the same loss.

    python scripts/bench_chunked_loss.py [--steps 2] [--warmup 1]
"""

import argparse
import json
import subprocess
import sys

SHAPE = ["--model-n-layer", "2", "--model-n-embd", "768", "--model-n-head", "12", "--model-n-positions", "1024",
         "--tokenizer-vocab-size", "32000", "--data-block-size", "1024", "--training-global-batch-size", "4",
         "--training-per-device-batch-size", "4", "--training-precision", "fp32", "--optimization-optimizer", "adamw",
         "--training-dataloader-workers", "0", "--preset", "none"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    command = [sys.executable, "-m", "gpt2zh", "bench", "--config", "demo", *SHAPE, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--json", "--compare", "training.chunked_loss=true,false"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"bench failed:\n{result.stderr}")
    chunked, plain = json.loads(result.stdout)["variants"]
    memory = chunked["memory"]["measured_gib"] / plain["memory"]["measured_gib"]
    speed = chunked["tokens_per_second"] / plain["tokens_per_second"]
    loss_gap = abs(chunked["final_loss"] - plain["final_loss"])
    for name, row in (("chunked", chunked), ("plain", plain)):
        print(f"{name:8} {row['tokens_per_second']:8,.0f} tokens/s  peak {row['memory']['measured_gib']:.2f} GiB "
              f"(estimate {row['memory']['estimate_gib']:.2f} GiB above the process)  loss {row['final_loss']:.4f}")
    print(f"peak memory ratio {memory:.2f} (goal <= 0.75), tokens/s ratio {speed:.2f} (goal >= 0.9), "
          f"loss difference {loss_gap:.1e}")
    return 0 if memory <= 0.75 and speed >= 0.9 and loss_gap < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
