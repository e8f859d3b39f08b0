#!/usr/bin/env python3
"""Stage 1: train the SentencePiece tokenizer -> <run-dir>/tokenizer/.

Same as `gpt2zh train-tokenizer`; see `--help` for every option.
"""

from gpt2zh.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("train-tokenizer"))
