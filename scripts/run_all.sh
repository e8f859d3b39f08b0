#!/usr/bin/env bash
# The whole pipeline as four scripts, for those who read scripts: the same as `gpt2zh run`.
# Every argument goes to every stage (one command line serves all; each stage reads what it needs).
#   scripts/run_all.sh --config demo --run-dir runs/demo [--hub-repo-id you/gpt2-zh-demo]
set -euo pipefail
cd "$(dirname "$0")/.."
python scripts/01_train_tokenizer.py "$@"
python scripts/02_tokenize_dataset.py "$@"
python scripts/03_pretrain.py "$@"
if [ -n "$(python -m gpt2zh show-config --get hub.repo_id "$@")" ]; then
  python scripts/04_push_to_hub.py "$@"
else
  echo "run_all: no hub.repo_id, so stage 4 (push) is skipped"
fi
