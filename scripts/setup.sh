#!/usr/bin/env bash
# Create ./.venv (or $VENV) and install gpt2zh into it, editable, with the extras given as arguments
# (e.g. `scripts/setup.sh demo` or `scripts/setup.sh dev`). Safe to re-run; quick when nothing changed.
# `scripts/setup.sh --dry-run [extras…]` says what it would do and why, and installs and creates nothing.
#
# torch comes first, chosen for the machine, so that the project's `torch>=2.2` requirement is already
# met and pip never pulls a build the machine cannot use (several GB):
#   - $PYTHON already has a torch with CUDA, >= 2.2 (a rented GPU image): the venv sees it through
#     system site packages; nothing is downloaded (CN2).
#   - NVIDIA driver present: the CUDA build of PyTorch's index that this driver runs (CN1).
#   - otherwise: the CPU build from PyTorch's CPU index, or, if that index is unreachable, a `+cpu`
#     wheel from the configured index/find-links (never the CUDA build).
# Override with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.13.0") and TORCH_INDEX_URL; either one means
# "install this", never "reuse". Everything else comes from pip's configured index (pip.conf,
# PIP_INDEX_URL: a domestic mirror is honoured). A venv that already has torch keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
DRY_RUN=0
extras=()
for argument in "$@"; do
  if [ "$argument" = "--dry-run" ]; then DRY_RUN=1; else extras+=("$argument"); fi
done
EXTRAS="$(IFS=,; echo "${extras[*]-}")"

DEFAULT_TORCH_SPEC="torch==2.13.0"
MINIMUM_TORCH="2.2"  # pyproject.toml's torch>=2.2
# The CUDA builds PyTorch publishes for DEFAULT_TORCH_SPEC (https://download.pytorch.org/whl/<build>),
# oldest first, as build:CUDA version. Update with the pin.
CUDA_BUILDS="cu126:12.6 cu128:12.8 cu130:13.0"
# The oldest NVIDIA driver that runs any build of a CUDA major version (NVIDIA's CUDA release notes,
# "minor version compatibility"), as major:driver.
MINIMUM_DRIVERS="12:525.60.13 13:580.65.06"

say() { echo "setup: $*"; }
dry_note() { if [ "$DRY_RUN" = 1 ]; then say "$@"; fi; }  # what a real run does silently
run() {  # a command that changes the machine; under --dry-run only shown
  if [ "$DRY_RUN" = 1 ]; then echo "setup: (dry run) would run: $*"; else "$@"; fi
}
pip_install() {  # pip, minus the harmless notes about this machine's local package mirrors
  if [ "$DRY_RUN" = 1 ]; then
    echo "setup: (dry run) would run: $VENV/bin/python -m pip install $*"
    return 0
  fi
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
cuda_number() { local major=${1%%.*} minor=${1#*.}; echo $((major * 1000 + ${minor%%.*})); }  # 12.2 -> 12002

driver_cuda_version() {  # the highest CUDA version the NVIDIA driver runs (12.2), or nothing without a driver
  # nvidia-smi's header says it on every driver, old and new ("Driver Version: 535.104.05  CUDA Version:
  # 12.2"); a failing nvidia-smi (no driver loaded, no GPU) counts as no GPU.
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  local header
  header="$(nvidia-smi 2>/dev/null)" || return 0
  sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' <<<"$header" | head -n 1
}

choose_cuda_build() {  # $1: the driver's CUDA version -> cuda_build (cu126) and build_reason; 1 when none runs
  # A driver runs every CUDA version up to the one it reports, so the newest build at or below it is
  # the first choice. A driver older than every build of its major version (12.2 and cu126) still runs
  # it by CUDA's minor version compatibility: any 12.x build runs on a driver of CUDA 12.0 or later
  # (>= 525.60.13); PyTorch's wheels carry their own CUDA runtime and compiled kernels for every GPU such
  # a driver supports, so they need none of what minor version compatibility leaves out (PTX JIT
  # compilation, the newest driver APIs). Across major versions
  # nothing is compatible: a 12.x driver never runs cu130 (torch then says "The NVIDIA driver on your
  # system is too old"), and an 11.x driver runs no build of this torch.
  local driver major entry build version best="" same_major=""
  driver=$(cuda_number "$1")
  major=${1%%.*}
  for entry in $CUDA_BUILDS; do
    build=${entry%%:*} version=${entry#*:}
    if [ "$(cuda_number "$version")" -le "$driver" ]; then
      best=$build
    elif [ "${version%%.*}" = "$major" ] && [ -z "$same_major" ]; then
      same_major=$build
    fi
  done
  if [ -n "$best" ]; then
    cuda_build=$best build_reason=""
  elif [ -n "$same_major" ]; then
    cuda_build=$same_major build_reason=", by CUDA $major minor version compatibility"
  else
    local oldest=${CUDA_BUILDS%% *} needed driver_version
    needed=${oldest#*:} needed=${needed%%.*}  # the major version of the oldest build
    driver_version=$(tr ' ' '\n' <<<"$MINIMUM_DRIVERS" | sed -n "s/^$needed://p")
    echo "setup: the NVIDIA driver supports CUDA $1, older than every CUDA build of $TORCH_SPEC" \
         "($(sed 's/:[0-9.]*//g' <<<"$CUDA_BUILDS" | tr ' ' '/')); update the NVIDIA driver to" \
         "$driver_version or newer (CUDA $needed), or set TORCH_SPEC and TORCH_INDEX_URL to an older torch" \
         "built for CUDA ${1%%.*} (for CUDA 11.8: TORCH_SPEC=torch==2.7.1" \
         "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu118)" >&2
    return 1
  fi
}

reusable_system_torch() {  # $1: the driver's CUDA version or nothing; 0 when $PYTHON's torch will do (CN2)
  local probe found version cuda in_venv base
  probe='import sys
try:
    import torch
except Exception:
    raise SystemExit(0)
print(torch.__version__, torch.version.cuda, sys.prefix != sys.base_prefix, sys.base_prefix)'
  found="$("$PYTHON" -c "$probe" 2>/dev/null)" || return 1
  [ -n "$found" ] || return 1
  read -r version cuda in_venv base <<<"$found"
  local what="$PYTHON's torch $version (CUDA $cuda)"
  if [ "$cuda" = None ]; then
    [ -z "$1" ] || say "$PYTHON's torch $version is a CPU build; not reused on this GPU machine"
    return 1
  fi
  if [ "$(printf '%s\n' "$MINIMUM_TORCH" "${version%%+*}" | sort -V | head -n 1)" != "$MINIMUM_TORCH" ]; then
    say "$what is older than the torch>=$MINIMUM_TORCH gpt2zh needs; not reused"; return 1
  fi
  if [ -n "$1" ] && [ "${cuda%%.*}" -gt "${1%%.*}" ]; then
    say "$what needs a newer driver than this one (CUDA $1); not reused"; return 1
  fi
  if [ "$in_venv" = True ]; then  # a venv's system site packages are its base Python's, not $PYTHON's
    say "$what is in a virtual environment, which another venv cannot share; not reused"; return 1
  fi
  if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')" != "$base" ]; then
    say "$what is not reused: $VENV was made by another Python (remove $VENV to reuse it)"; return 1
  fi
  if [ -n "${TORCH_SPEC:-}${TORCH_INDEX_URL:-}" ]; then
    say "$what is not reused: TORCH_SPEC or TORCH_INDEX_URL asks for another"; return 1
  fi
  say "reusing $what through the venv's system site packages; nothing to download (TORCH_SPEC installs another)"
}

prepare_venv() {  # $1: 1 when the venv must see $PYTHON's site packages (its torch)
  local config="$VENV/pyvenv.cfg"
  if [ ! -x "$VENV/bin/python" ]; then
    if [ "$1" = 1 ]; then
      say "creating $VENV with $("$PYTHON" --version) and its system site packages"
      run "$PYTHON" -m venv --system-site-packages "$VENV"
    else
      say "creating $VENV with $("$PYTHON" --version)"
      run "$PYTHON" -m venv "$VENV"
    fi
  elif [ "$1" = 1 ] && ! grep -q "^include-system-site-packages *= *true" "$config"; then
    # A venv of the same Python without torch (an earlier set-up stopped before torch): let it see the
    # system's torch rather than download another; its own packages still come first.
    say "$VENV was created without system site packages; turning them on in $config"
    run sed -i 's/^include-system-site-packages *= *false/include-system-site-packages = true/' "$config"
  else
    dry_note "using $VENV as it is"
  fi
}

plan_torch_install() {  # $1: the driver's CUDA version or nothing -> torch_spec, torch_index (none: the configured one)
  if [ -n "$1" ]; then
    torch_spec=$TORCH_SPEC
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
      torch_index=$TORCH_INDEX_URL
      say "NVIDIA driver supports CUDA $1; installing $torch_spec from $torch_index (TORCH_INDEX_URL)"
    else
      choose_cuda_build "$1" || return 1
      torch_index="https://download.pytorch.org/whl/$cuda_build"
      say "NVIDIA driver supports CUDA $1; installing $torch_spec ($cuda_build build$build_reason) from $torch_index"
    fi
    return 0
  fi
  torch_index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
  # Probe the CPU index once: unreachable, pip would retry it for every package (minutes).
  if "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" \
       "$torch_index" 2>/dev/null; then
    torch_spec=$TORCH_SPEC
    say "no NVIDIA GPU; installing $torch_spec (CPU build from $torch_index)"
  else
    # Without the CPU index, ask for the `+cpu` local version: it matches CPU wheels only (a local
    # wheel or a mirror), so pip fails rather than fetch the CUDA build.
    torch_spec=$TORCH_SPEC torch_index=""
    case "$TORCH_SPEC" in torch==*+*) ;; torch==*) torch_spec="$TORCH_SPEC+cpu" ;; esac
    say "no NVIDIA GPU and ${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu} is unreachable;" \
        "installing $torch_spec (CPU build) from the configured index"
  fi
}

install_torch() {
  if [ -n "$torch_index" ]; then
    pip_install --index-url "$torch_index" "$torch_spec"
  else
    pip_install "$torch_spec" || {
      echo "setup: no CPU build of torch found; set TORCH_INDEX_URL to a reachable mirror of https://download.pytorch.org/whl/cpu" >&2
      exit 1
    }
  fi
}

install_project() {  # from pip's configured index (pip.conf, PIP_INDEX_URL): never --index-url here
  # Re-install the project only when pyproject.toml or the extras changed.
  local stamp="$VENV/.gpt2zh-installed" want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) [$EXTRAS]"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing gpt2zh${EXTRAS:+[$EXTRAS]} and its dependencies from pip's configured index"
    pip_install -e ".${EXTRAS:+[$EXTRAS]}"
    if [ "$DRY_RUN" = 0 ]; then echo "$want" > "$stamp"; fi
  else
    dry_note "gpt2zh${EXTRAS:+[$EXTRAS]} is installed in $VENV and up to date"
  fi
}

reuse=0 need_torch=1
if [ -x "$VENV/bin/python" ] && venv_torch="$("$VENV/bin/python" -c "import torch; print(torch.__version__)" 2>/dev/null)"; then
  dry_note "$VENV already has torch $venv_torch; keeping it"
  need_torch=0
else
  driver_cuda="$(driver_cuda_version)"
  if reusable_system_torch "$driver_cuda"; then
    reuse=1 need_torch=0
  else
    TORCH_SPEC="${TORCH_SPEC:-$DEFAULT_TORCH_SPEC}"
    plan_torch_install "$driver_cuda" || exit 1
  fi
fi
prepare_venv "$reuse"
if [ "$reuse" = 1 ] && [ "$DRY_RUN" = 0 ] && ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  say "$VENV does not see $PYTHON's torch after all; installing one"  # else pip would take PyPI's default build
  TORCH_SPEC="${TORCH_SPEC:-$DEFAULT_TORCH_SPEC}"
  plan_torch_install "$driver_cuda" || exit 1
  need_torch=1
fi
if [ "$need_torch" = 1 ]; then install_torch; fi
install_project
