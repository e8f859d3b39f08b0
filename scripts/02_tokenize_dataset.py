#!/usr/bin/env python3
"""Stage 2: tokenize the corpus into fixed-length blocks -> <run-dir>/dataset/.

Same as `gpt2zh tokenize`; see `--help` for every option.
"""

from gpt2zh.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("tokenize"))
