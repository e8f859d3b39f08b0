#!/usr/bin/env bash
# One command for the tests: set up .venv with the dev extras, then run the whole suite on CPU.
# Extra arguments go to pytest (e.g. -k tokenizer, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
