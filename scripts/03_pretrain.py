#!/usr/bin/env python3
"""Stage 3: pretrain GPT-2 on <run-dir>/dataset/ -> checkpoints/, logs/, model/.

Same as `gpt2zh pretrain`; see `--help` for every option. Several GPUs or machines:
`torchrun --nproc_per_node N scripts/03_pretrain.py ...` (or `-m gpt2zh pretrain`).
"""

from gpt2zh.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("pretrain"))
