#!/usr/bin/env python3
"""Stage 4: push <run-dir>/model/, a generated model card and the training logs to the Hub.

Same as `gpt2zh push`; see `--help` for every option. The token comes from HF_TOKEN or
`hf auth login`; `--dry-run` lists what would be pushed.
"""

from gpt2zh.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("push"))
