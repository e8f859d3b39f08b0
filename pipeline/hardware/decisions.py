"""Decisions as pure functions of HardwareFacts: tested with fabricated A100/4090/5090/T4/H100/CPU facts."""

import re

from gpt2zh.hardware.facts import GpuFacts, HardwareFacts

AMPERE = (8, 0)
# The lower bounds pyproject.toml declares (requires-python, dependencies, the `gpu` extra), checked by
# `gpt2zh doctor`; tests/test_doctor.py fails when the two disagree. The guide's version table asks for less
# (torch 2.0, transformers 4.36), but this code uses transformers 5's argument names (G16).
MINIMUM_VERSIONS = {"python": "3.10", "torch": "2.2", "transformers": "5.0", "flash-attn": "2.0"}


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0); '2.0rc1' -> (2, 0): numbers up to the first non-numeric part."""
    parts = []
    for piece in version.split("+")[0].split("."):
        leading = re.match(r"\d+", piece)
        if leading is None:
            break
        parts.append(int(leading.group()))
        if leading.end() != len(piece):
            break
    return tuple(parts)


def version_at_least(installed: str | None, minimum: str) -> bool:
    return installed is not None and version_tuple(installed) >= version_tuple(minimum)


def primary_gpu(facts: HardwareFacts) -> GpuFacts | None:
    return facts.gpus[0] if facts.gpus else None


def tf32_eligible(facts: HardwareFacts) -> bool:
    """TF32 matmuls exist on Ampere and newer only (G12)."""
    gpu = primary_gpu(facts)
    return gpu is not None and gpu.capability >= AMPERE


def bf16_native(facts: HardwareFacts) -> bool:
    """Native bf16 needs SM >= 8.0; torch reports T4/V100 bf16 as 'supported' through slow emulation."""
    gpu = primary_gpu(facts)
    return gpu is not None and gpu.capability >= AMPERE


def flash_attention_eligible(facts: HardwareFacts) -> tuple[bool, str]:
    """FlashAttention-2 needs the package and an Ampere+ GPU (G11); dtype is checked at training."""
    gpu = primary_gpu(facts)
    if gpu is None:
        return False, "no CUDA GPU: SDPA attention is used"
    if facts.flash_attn_version is None:
        return False, "flash-attn is not installed or does not import: SDPA attention is used (pip install flash-attn)"
    if gpu.capability < AMPERE:
        major, minor = gpu.capability
        return False, f"{gpu.name} is SM {major}.{minor}; FlashAttention-2 needs SM >= 8.0: SDPA attention is used"
    if not version_at_least(facts.flash_attn_version, MINIMUM_VERSIONS["flash-attn"]):
        return False, f"flash-attn {facts.flash_attn_version} is older than {MINIMUM_VERSIONS['flash-attn']}"
    return True, f"flash-attn {facts.flash_attn_version} on {gpu.name}"


def compile_available(facts: HardwareFacts) -> tuple[bool, str]:
    if facts.torch_version is None:
        return False, "torch is not installed"
    if facts.gpus:
        return (True, "torch.compile with Triton") if facts.triton_available else (False, "Triton is missing")
    return (True, "torch.compile on CPU (C++ compiler found)") if facts.cxx_compiler else \
        (False, "no C++ compiler for torch.compile on CPU")


def training_device(facts: HardwareFacts) -> str:
    return "cuda" if facts.gpus else "cpu"
