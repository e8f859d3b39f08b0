#!/usr/bin/env bash
# One command for a newcomer: set up .venv, then run the whole pipeline on the embedded demo corpus.
# Extra arguments go to `gpt2zh run` (e.g. --run-dir runs/try2 --tokenizer-vocab-size 6000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
echo "demo: stages 1-3 take about 11 minutes on a 2-core CPU; a short look first: bash scripts/demo.sh" \
     "--training-max-steps 200 --run-dir runs/demo-look (about 2 minutes)" >&2
exec "${VENV:-.venv}/bin/gpt2zh" run --config configs/demo.yaml "$@"
