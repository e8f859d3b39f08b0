#!/usr/bin/env bash
# Create ./.venv (or $VENV) and install gpt2zh into it, editable, with the extras given as arguments
# (e.g. `scripts/setup.sh demo` or `scripts/setup.sh dev`). Safe to re-run; quick when nothing changed.
#
# torch comes first, chosen for the machine, so that the project's `torch>=2.2` requirement is already
# met and pip never pulls the CUDA build (several GB) onto a CPU-only machine:
#   - NVIDIA driver present (nvidia-smi works): the default PyPI build, which ships CUDA.
#   - otherwise: the CPU build from PyTorch's CPU index, or, if that index is unreachable, a `+cpu`
#     wheel from the configured index/find-links (never the CUDA build).
# Override with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.13.0") and TORCH_INDEX_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="$(IFS=,; echo "$*")"

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
pip_install() {  # pip, minus the harmless notes about this machine's local package mirrors
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found; installing $TORCH_SPEC (CUDA build)"
    pip_install "$TORCH_SPEC"
  else
    index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
    # Probe the CPU index once: unreachable, pip would retry it for every package (minutes).
    if "$VENV/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" "$index" 2>/dev/null; then
      echo "setup: no NVIDIA GPU; installing $TORCH_SPEC (CPU build from $index)"
      pip_install --index-url "$index" "$TORCH_SPEC"
    else
      # Without the CPU index, ask for the `+cpu` local version: it matches CPU wheels only (a local
      # wheel or a mirror), so pip fails rather than fetch the CUDA build.
      cpu_spec="$TORCH_SPEC"
      case "$TORCH_SPEC" in torch==*+*) ;; torch==*) cpu_spec="$TORCH_SPEC+cpu" ;; esac
      echo "setup: no NVIDIA GPU and $index is unreachable; installing $cpu_spec from the configured index"
      pip_install "$cpu_spec" || {
        echo "setup: no CPU build of torch found; set TORCH_INDEX_URL to a reachable mirror of https://download.pytorch.org/whl/cpu" >&2
        exit 1
      }
    fi
  fi
fi

# Re-install the project only when pyproject.toml or the extras changed.
stamp="$VENV/.gpt2zh-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) [$EXTRAS]"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing gpt2zh${EXTRAS:+[$EXTRAS]} and its dependencies"
  pip_install -e ".${EXTRAS:+[$EXTRAS]}"
  echo "$want" > "$stamp"
fi
