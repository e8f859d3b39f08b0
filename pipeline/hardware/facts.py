"""Collect facts about this machine once; every decision is made from these facts elsewhere.

Keeping collection apart from decisions lets tests feed fabricated A100 / RTX 4090 / RTX 5090 / T4 /
H100 facts to the same functions that run on the real machine.
"""

import importlib.metadata
import importlib.util
import logging
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class GpuFacts:
    name: str
    memory_gib: float
    capability: tuple[int, int]


@dataclass(frozen=True)
class HardwareFacts:
    python_version: str
    cpu_count: int
    torch_version: str | None = None
    cuda_available: bool = False
    cuda_version: str | None = None        # the CUDA runtime torch was built with (torch.version.cuda)
    gpus: tuple[GpuFacts, ...] = ()
    flash_attn_version: str | None = None  # set only when `import flash_attn` succeeds
    bitsandbytes_version: str | None = None
    triton_available: bool = False
    cxx_compiler: bool = False             # torch.compile on CPU generates C++
    world_size: int = 1                    # from the launcher (torchrun / accelerate launch)
    local_rank: int = 0
    versions: dict[str, str | None] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StorageFacts:
    cache_dir: str
    cache_writable: bool
    run_dir: str
    free_gib: float


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _flash_attn_version() -> str | None:
    if importlib.util.find_spec("flash_attn") is None:
        return None
    try:  # installed is not importable: a wheel built for another CUDA/torch fails here
        import flash_attn

        return getattr(flash_attn, "__version__", None) or package_version("flash-attn") or "unknown"
    except Exception:
        return None


# What a CUDA, ROCm or WSL2 GPU driver leaves on Linux (its files, or the tools that load it on first use).
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
GPU_DRIVER_TOOLS = ("nvidia-smi", "nvidia-modprobe", "rocm-smi")


def no_gpu_possible() -> bool:
    """True only where torch cannot see a GPU: no device allowed, macOS, or Linux without any trace of a GPU
    driver. Elsewhere torch is asked (its import costs 1.5 s on a CPU build, more with CUDA)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return True
    if sys.platform == "darwin":
        return True
    if not sys.platform.startswith("linux"):
        return False
    return not any(os.path.exists(path) for path in GPU_DRIVER_PATHS) and \
        not any(shutil.which(tool) for tool in GPU_DRIVER_TOOLS)


def collect_facts(import_torch: bool = False) -> HardwareFacts:
    """Without a GPU torch is not imported (PITFALLS.md NU14: `gpt2zh --help` and `plan` start in well under a
    second): its version comes from the package metadata, and cuda_version and flash_attn_version, which only
    a GPU needs, stay None. import_torch: ask torch anyway (`gpt2zh doctor` reports the CUDA build)."""
    libraries = ("transformers", "datasets", "huggingface_hub", "tokenizers", "sentencepiece", "accelerate", "protobuf")
    versions = {name: package_version(name) for name in libraries}
    common = dict(
        python_version=platform.python_version(),
        cpu_count=os.cpu_count() or 1,
        bitsandbytes_version=package_version("bitsandbytes"),
        triton_available=importlib.util.find_spec("triton") is not None,
        cxx_compiler=any(shutil.which(c) for c in ("g++", "c++", "clang++")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        versions=versions,
    )
    if not import_torch and no_gpu_possible():
        installed = package_version("torch")
        return HardwareFacts(torch_version=installed.split("+")[0] if installed else None, **common)
    try:
        import torch
    except ImportError:
        return HardwareFacts(**common)
    gpus: tuple[GpuFacts, ...] = ()
    if torch.cuda.is_available():
        gpus = tuple(
            GpuFacts(name=torch.cuda.get_device_name(i),
                     memory_gib=round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
                     capability=tuple(torch.cuda.get_device_capability(i)))
            for i in range(torch.cuda.device_count()))
    return HardwareFacts(torch_version=torch.__version__.split("+")[0], cuda_available=bool(gpus),
                         cuda_version=torch.version.cuda, gpus=gpus, flash_attn_version=_flash_attn_version(), **common)


def collect_storage(run_dir: Path) -> StorageFacts:
    cache = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    writable = False
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / f".gpt2zh-write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
        writable = True
    except OSError:
        pass
    existing = run_dir.resolve()
    while not existing.exists():
        existing = existing.parent
    return StorageFacts(cache_dir=str(cache), cache_writable=writable, run_dir=str(run_dir),
                        free_gib=round(shutil.disk_usage(existing).free / 2**30, 1))


def probe_8bit_adam(device: str) -> tuple[bool, str]:
    """Build bitsandbytes' Adam8bit on a tensor on `device` and take one real step (G4).

    Importing bitsandbytes is not enough: builds without GPU support import fine and fail at the step.
    """
    if package_version("bitsandbytes") is None:
        return False, "bitsandbytes is not installed"
    try:
        # bitsandbytes warns at import about optional 4-bit CPU kernels, which 8-bit Adam does not use.
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
        import bitsandbytes as bnb
        import torch

        param = torch.zeros(4096, device=device, requires_grad=True)  # >= min_8bit_size: 8-bit state for real
        optimizer = bnb.optim.Adam8bit([param], lr=1e-3)
        param.grad = torch.ones_like(param)
        optimizer.step()
        state = optimizer.state[param]
        if state["state1"].dtype != torch.uint8 or not torch.isfinite(param).all() or param.abs().sum() == 0:
            return False, "Adam8bit ran but did not produce an 8-bit update"
        return True, f"Adam8bit stepped on {device} (bitsandbytes {bnb.__version__})"
    except Exception as err:  # any failure means: fall back to AdamW
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return False, f"{type(err).__name__}: {first_line[:160]}"

